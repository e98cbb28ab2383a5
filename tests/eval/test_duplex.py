"""The offline duplex benchmark: scoring arithmetic, the corpus' own system channel as a check,
dialogue token streams consistent with the events, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speechlm.cli import main
from speechlm.core.errors import ConfigError
from speechlm.data.audio import SAMPLE_RATE
from speechlm.data.dialogue import DialogueConfig, DialogueCorpus, synthesize_dialogues
from speechlm.data.dialogue.corpus import SCHEMA
from speechlm.data.dialogue.record import SYSTEM, USER, Dialogue, Event
from speechlm.lm.config import TrainConfig
from speechlm.lm.duplex import run_duplex
from speechlm.eval.duplex import (FRAME, DuplexConfig, evaluate_duplex, monologue, score_dialogue,
                                  segments, summarize, vad_frames)
from speechlm.tokenizers.dialogue import STATES, heard_units, tokenize_dialogues
from speechlm.tokenizers.semantic.tokenizer import load_tokenizer
from speechlm.tokenizers.tokens import TokenDataset

BUSY = DialogueConfig(interruption_prob=0.7, non_query_prob=0.9, backchannel_prob=0.8,
                      pause_prob=0.5, overlap_prob=0.4)


@pytest.fixture(scope="module")
def dialogues(tmp_path_factory) -> DialogueCorpus:
    out = tmp_path_factory.mktemp("dialogue") / "d"
    return synthesize_dialogues(out, hours=70 / 3600, voices=3, heldout_voices=3, seed=2,
                                config=BUSY, show_progress=False)


def hand_made() -> Dialogue:
    """Query with a pause, a response cut by a barge-in query, non-query noise."""
    events = (Event("turn", "query", USER, 0.0, 2.0), Event("pause", "pause", USER, 0.8, 1.3),
              Event("turn", "response", SYSTEM, 2.3, 4.15),
              Event("turn", "query", USER, 4.0, 6.0),
              Event("interruption", "barge_in", USER, 4.0, 4.15),
              Event("non_query", "noise_mid", USER, 9.0, 10.0))
    return Dialogue("d", "heldout", SAMPLE_RATE, 12.0, ("u", "s"), (b"", b""), events)


def test_scores_are_the_hand_computed_ones():
    system = [(1.0, 1.2),       # a backchannel in the query's pause (short: not a takeover)
              (2.3, 4.12),      # the response (0.3 s after the query), stopped 0.12 s after barge-in
              (6.4, 7.5),       # the answer to the second query (0.4 s)
              (9.5, 10.2)]      # a response to noise: a false response
    quiet = np.ones(600, dtype=bool)  # the output's energy: the response ends at 4.06 s
    for start, end in system[:1] + [(2.3, 4.06)] + system[2:]:
        quiet[round(start / 0.02):round(end / 0.02)] = False
    quiet[200:202] = True             # a 40 ms gap at the barge-in (4.0 s) is not yet the stop
    part = score_dialogue(hand_made(), system, quiet)
    assert part["stop"] == [pytest.approx(0.06)] and part["stop_vad"] == [pytest.approx(0.12)]
    assert part["latency"] == [pytest.approx(0.3), pytest.approx(0.4)]
    assert (part["answered"], part["false"], part["takeovers"], part["backchannels"]) == (2, 1, 0, 1)
    summary = summarize([part], [0.01, 0.03], [0.005, 0.015])
    assert summary["interruption_stop_latency_p95_ms"] == 60.0
    assert summary["interruption_stop_latency_vad_p95_ms"] == 120.0
    assert score_dialogue(hand_made(), system)["stop"] == [pytest.approx(0.12)]  # VAD only
    assert summary["turn_taking_latency_ms"] == 350.0
    assert summary["silence_query_accuracy"] == 1.0 and summary["false_response_rate"] == 1.0
    assert summary["backchannel_rate"] == pytest.approx(1 / (4.0 / 60), abs=1e-3)
    assert summary["frame_cpu_p95_over_frame"] == pytest.approx(0.0145 / 0.02, abs=1e-3)
    # a reply the user's next query cuts after 0.2 s is still an answer; 0.2 s alone is not
    cut = score_dialogue(hand_made(), [(3.8, 4.05), (6.4, 7.5)])
    short = score_dialogue(hand_made(), [(3.5, 3.7), (6.4, 7.5)])
    assert (cut["answered"], cut["latency"][0]) == (2, pytest.approx(1.8))
    assert short["answered"] == 1


def test_vad_segments_follow_the_audio():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 1e-3, SAMPLE_RATE * 3).astype(np.float32)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    voiced = 0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * (2 + np.sin(2 * np.pi * 4 * t))
    audio[SAMPLE_RATE:2 * SAMPLE_RATE] += voiced.astype(np.float32) * 0.5
    found = segments(vad_frames(audio))
    start, end = max(found, key=lambda seg: seg[1] - seg[0])
    assert abs(start - 1.0) <= 0.1 and abs(end - 2.0) <= 0.2
    assert sum(b - a for a, b in found) <= 1.3   # the noise is not speech (beyond webrtcvad's start)


def test_the_recorded_system_channel_scores_as_scripted(dialogues):
    result = evaluate_duplex(None, list(dialogues.dialogues()), None, DuplexConfig(),
                             show_progress=False)
    d = result["duplex"]
    assert result["system"] == "reference" and d["queries"] >= 4 and d["non_query_segments"] >= 2
    assert d["silence_query_accuracy"] >= 0.9 and d["false_response_rate"] == 0.0
    # Whisper hears the words the script left the system (held-out espeak voices: ~0.4)
    assert d["reply_wer"] is not None and d["reply_wer"] < 0.6
    assert all(p["meant"] and "heard" in p for p in result["per_dialogue"])
    # the stop is read from the output's energy: the scripted 60-120 ms, to the 20 ms frame;
    # webrtcvad's segment end trails it
    assert d["interruptions"] >= 1 and d["interruption_stop_latency_p95_ms"] <= 180
    assert d["interruption_stop_latency_vad_p95_ms"] > d["interruption_stop_latency_p95_ms"]


def test_token_streams_match_the_events_and_the_audio(dialogues, tiny_corpus, tmp_path):
    from speechlm.tokenizers import train_tokenizer

    tok = train_tokenizer(tiny_corpus, tmp_path / "tok", features="mfcc", units=16,
                          show_progress=False)
    data = TokenDataset(tokenize_dialogues(tok, dialogues.root, tmp_path / "tokens", 1,
                                           show_progress=False))
    silence, speak = data.meta["silence_unit"], STATES.index("speak")
    seen_states = set()
    for d in dialogues.dialogues():
        rec = next(r for r in data.split(d.split) if r.id == d.id)
        n = rec.units.size
        assert n == int(d.duration * 50) and rec["user"].size == n and rec["chars"].size == n
        state = np.asarray(rec["state"])
        seen_states |= set(state.tolist())
        # the system stream says the silence unit exactly where its state is not "speak"
        assert (np.asarray(rec.units)[state != speak] == silence).all()
        # no speech in the system channel where the events declare it silent (webrtcvad, 40 ms
        # of slack at the edges of each span), and speech in most of its declared frames
        vad = vad_frames(d.samples()[SYSTEM], mode=3)[:n]
        silent = np.convolve(state != speak, np.ones(5), "same") == 5
        assert vad[silent[:vad.size]].mean() < 0.02, d.id
        assert vad[state[:vad.size] == speak].mean() > 0.6, d.id
    assert {STATES.index(s) for s in ("query", "non_query", "speak", "interrupted")} <= seen_states
    # the user stream is what a listener with the model's look-ahead hears: frame t does not
    # change with audio after frame t + 1, and the models' delays must agree with it
    assert data.meta["user_lookahead"] == 1
    user = d.samples()[USER]
    cut = 300                                            # frames kept before the audio changes
    changed = user.copy()
    changed[(cut + 2) * 320:] = np.random.default_rng(0).normal(0, 0.1, changed.size - (cut + 2) * 320)
    listener = load_tokenizer(tok)
    heard, heard_changed = (heard_units(listener, x, n, 1) for x in (user, changed))
    assert (heard[:cut + 1] == heard_changed[:cut + 1]).all() and (heard != heard_changed).any()
    cfg = TrainConfig(dialogue_dir=str(dialogues.root), tokens_dir=str(tmp_path / "tokens"),
                      streams=["units", "state", "user"], layout="delay", delays=[1, 1, 4],
                      output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="look-ahead 1, but delays=.* look-ahead 3"):
        run_duplex(cfg, "moshi", ["user"], resume=False, source="x.yaml")
    assert not (tmp_path / "run").exists()


def _corrupt_corpus(root, dialogue: Dialogue):
    (root / "dialogues").mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"kind": "dialogue", "version": 1}))
    pq.write_table(pa.Table.from_pylist([dialogue.to_dict()], schema=SCHEMA),
                   root / "dialogues" / "heldout-00000.parquet")
    return root


def test_malformed_dialogue_metadata_gives_one_line_error(dialogues, tmp_path, capsys):
    d = next(dialogues.dialogues("heldout"))
    bad = dataclasses.replace(d, events=d.events + (Event("non_query", "tv", USER, 0.0, 1.0),))
    root = _corrupt_corpus(tmp_path / "bad", bad)
    code = main(["eval", "--suite", "duplex", "--model", str(tmp_path / "none"), "--dialogues",
                 str(root), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert "unknown non_query label 'tv'" in err and "heldout-00000.parquet" in err, err
    assert main(["eval", "--suite", "duplex,lexical", "--model", "m", "--out", "o"]) == 2
    assert "runs on its own" in capsys.readouterr().err


def test_a_text_stream_written_letter_by_letter_reads_back_as_words():
    assert monologue(["", "h", "i", "", "", "y", "o", "u", ""]) == "hi you"
    assert monologue(["", ""]) == ""


def test_frames_are_20_ms():
    assert FRAME / SAMPLE_RATE == 0.02
