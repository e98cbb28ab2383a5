"""The duplex engine inside Session: frame by frame it equals one offline forward pass; gating."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlm.core.errors import ConfigError
from speechlm.generation.duplex import YIELD_THRESHOLD
from speechlm.generation.pipeline import Sampling, SpeechPipeline
from speechlm.generation.session import Session
from speechlm.lm.config import TrainConfig
from speechlm.lm.duplex import DuplexInfo, check_duplex_config
from speechlm.lm.init.cold import cold_init
from speechlm.lm.layout import get_layout
from speechlm.lm.model import save_speech_lm
from speechlm.lm.modeldir import ModelMeta, StreamInfo
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab
from speechlm.tokenizers.dialogue import CHARS, STATES

UNITS = 16
FAMILIES = {"state": (len(STATES), "marker"), "user": (UNITS, "units"),
            "chars": (len(CHARS) + 1, "text")}
YIELD_CODES = [STATES.index("interrupted"), STATES.index("query")]
VARIANTS = {"moshi": (["units", "state", "user", "chars"], [1, 1, 2, 0], [1]),  # duplex-tiny
            "moshi-read-state": (["units", "state", "user", "chars"], [1, 0, 4, 0], []),  # look-ahead 3
            "dgslm": (["units", "user"], [0, 1], [])}                                    # dgslm-tiny


def duplex_model_dir(folder, variant: str, tokenizer_dir=None, seq_len: int = 256):
    """An untrained duplex model directory (what the duplex-tiny / dgslm-tiny recipes write)."""
    streams, delays, unread = VARIANTS[variant]
    vocab = SpeechVocab.for_units(UNITS)
    for name in streams[1:]:
        size, kind = FAMILIES[name]
        vocab = vocab.add_family(name, size, kind=kind)
    space = TokenSpace(vocab, tuple(streams), get_layout("delay", len(streams), delays))
    model = cold_init(space, "tiny", 0, 0, unread, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64)
    user = streams.index("user")
    info = DuplexInfo(variant, delays[user] - delays[0], 0, STATES, "state" in streams,
                      "chars" in streams, 50.0)
    meta = ModelMeta("speech", tuple(StreamInfo(s, tokenizer_dir, 50.0) for s in streams), "delay",
                     tuple(delays), seq_len, "pretrain", "cold", f"{variant}-test",
                     extra={"duplex": info.to_dict()})
    return save_speech_lm(folder / variant, model, vocab, meta)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_session_step_by_step_equals_the_offline_forward_pass(variant, tmp_path):
    """Every system row is the argmax of one offline forward pass over what the session fed
    (the state's whatever its temperature, its yield states pooled), the units among those its
    frame's state allows:
    the silence unit unless the state is speak, any other unit if it is."""
    pipe = SpeechPipeline.load(duplex_model_dir(tmp_path, variant))
    session = Session(pipe, Sampling(0, [0.0, 5.0, 1.0, 0.0][:len(VARIANTS[variant][0])], None))
    user = np.random.default_rng(0).integers(0, UNITS, 40)
    session.push_units(user[:25].tolist())
    session.push_units(user[25:].tolist())          # chunking does not matter
    engine, space = session.duplex, pipe.lm.space
    fed = np.stack(engine.columns, axis=1)          # (R, S): every step the session fed
    start = np.full((space.n_rows, 1), space.vocab.bos_id)
    with torch.no_grad():
        logits = pipe.lm.model(torch.as_tensor(np.concatenate([start, fed], axis=1))[None]).logits[0]
    delays, ranges = space.layout.delays, space.code_ranges()
    state, silence = engine.state_row, engine.info.silence_unit
    said = {}                       # system frame -> its state says speak
    checked, gated = 0, 0
    for s in range(fed.shape[1]):
        for row in engine.order:    # the state first: it gates the units of its frame
            delay = delays[row]
            if s < delay:
                assert fed[row, s] == space.vocab.pad_id
            elif row == engine.user:
                assert fed[row, s] - ranges[row][0] == user[s - delay]
            else:
                lo, hi = ranges[row]
                scores = logits[row, s, lo:hi].clone()
                if row == 0 and state is not None:  # the state of this frame gates its unit
                    if not said[s - delay]:
                        scores[:] = -np.inf
                        scores[silence], gated = 0.0, gated + 1
                    else:
                        scores[silence] = -np.inf
                expect = lo + int(scores.argmax())
                if row == state:            # a decision: the user-holds-the-floor states pooled,
                    p = scores.softmax(-1)      # and a speaking system stops at the threshold
                    rest = p.clone()
                    rest[YIELD_CODES] = 0.0
                    floor = p[YIELD_CODES].sum()
                    stop = floor > rest.max() or (said.get(s - delay - 1, False) and
                                                  floor >= YIELD_THRESHOLD)
                    expect = lo + (YIELD_CODES[int(p[YIELD_CODES].argmax())] if stop
                                   else int(rest.argmax()))
                    said[s - delay] = expect - lo == STATES.index("speak")
                assert fed[row, s] == expect, (row, s)
                checked += 1
    assert fed.shape[1] == len(user) + delays[engine.user]   # one step per heard frame
    assert checked > 40 and engine.said == fed.shape[1] - delays[0]
    assert (gated > 0) == (state is not None)


def test_context_is_cut_to_half_the_training_block(tmp_path):
    pipe = SpeechPipeline.load(duplex_model_dir(tmp_path, "moshi", seq_len=16))
    session = Session(pipe, Sampling(0, 0.8, 5), seed=1)
    session.push_units(list(range(10)) * 5)
    engine = session.duplex   # one step per heard unit, after the user row's delay
    assert engine.decoder.length <= 16 and engine.step == 50 + engine.delays[engine.user]


def test_reset_with_a_seed_replays_or_changes_the_draws(tmp_path):
    """A benchmark gives each conversation its own seed: the same seed replays the same draws,
    another seed draws differently from the same input."""
    session = Session(SpeechPipeline.load(duplex_model_dir(tmp_path, "moshi")),
                      Sampling(0, 1.5, None), seed=0)
    user = [3] * 40

    def run(seed):
        session.reset(seed=seed)
        session.push_units(user)
        return np.stack(session.duplex.columns, axis=1)

    first = run(1)
    assert np.array_equal(run(1), first) and not np.array_equal(run(2), first)
    assert session.seed == session.duplex.seed == 2


def test_a_yield_threshold_stops_a_speaking_system_earlier_and_only_then(tmp_path):
    probs = dict.fromkeys(STATES, 0.0) | {"speak": 0.7, "interrupted": 0.2, "query": 0.1}
    logits = torch.log(torch.tensor([probs[s] for s in STATES]) + 1e-12)
    decide = {}
    for threshold in (1.0, 0.25, 0.35):
        engine = Session(SpeechPipeline.load(duplex_model_dir(tmp_path / str(threshold), "moshi")),
                         yield_threshold=threshold).duplex
        for voiced in (False, True):
            engine.voiced = voiced
            decide[threshold, voiced] = STATES[engine._decide(logits)]
    assert decide[0.25, True] == "interrupted"     # P(user holds the floor) 0.3 >= 0.25
    assert decide[0.35, True] == decide[1.0, True] == "speak"
    assert decide[0.25, False] == "speak"          # not speaking: the pooled argmax decides
    assert engine.yield_threshold == 0.35
    assert Session(SpeechPipeline.load(duplex_model_dir(tmp_path, "moshi"))).duplex \
        .yield_threshold == YIELD_THRESHOLD
    with pytest.raises(ConfigError, match="yield_threshold"):
        Session(SpeechPipeline.load(duplex_model_dir(tmp_path / "bad", "moshi")),
                yield_threshold=1.5)


def test_yielding_to_the_user_drops_queued_audio_and_other_ends_let_it_play(tmp_path):
    """speak -> interrupted or query (the user holds the floor): silent in this frame; speak ->
    idle (a pause, the end of the turn): the vocoder's queued frames play out."""
    class Voice:  # 320 samples per unit, as the frame-level vocoder gives
        def push(self, units):
            return np.ones(320 * len(units), np.float32)

        def flush(self):
            return np.ones(640, np.float32)

        def reset(self):
            pass

    engine = Session(SpeechPipeline.load(duplex_model_dir(tmp_path, "moshi")), seed=0).duplex
    engine.voice = Voice()
    state = engine.state_row
    for token, queued in (("speak", 320), ("idle", 320 + 640), ("speak", 320 + 640 + 320),
                          ("interrupted", 0), ("speak", 320), ("query", 0)):
        frame = engine.said
        engine.codes[0][frame], engine.codes[state][frame] = 3, STATES.index(token)
        events = []
        engine._say(frame, [], events)
        assert engine.pending.size == queued, token
        if token == "interrupted":
            assert [e[0] for e in events] == ["interrupted"]


def test_duplex_configs_are_checked_up_front():
    good = dict(dialogue_dir="d", tokens_dir="t", layout="delay", streams=["units", "state", "user"])
    assert check_duplex_config(TrainConfig(**good, delays=[1, 0, 4]), ["user"], "x.yaml") == 3
    for bad, message in ((dict(delays=[1, 0, 1]), "look-ahead"), (dict(delays=[0, 1, 4]), "state"),
                         (dict(layout="parallel"), "layout=delay"),
                         (dict(streams=["units", "state"]), "include")):
        with pytest.raises(ConfigError, match=message):
            check_duplex_config(TrainConfig(**{**good, **bad}), ["user"], "x.yaml")
    assert TrainConfig(**good, unread_streams=["state"]).validate() == []
    for unread in (["units"], ["chars"]):
        assert "unread_streams" in TrainConfig(**good, unread_streams=unread).validate()[0]
