"""The generation pipeline and the streaming Session: same units as offline, state machine, streams."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechlm.cli import main
from speechlm.generation.pipeline import Sampling, SpeechPipeline
from speechlm.generation.session import Session
from speechlm.generation.streaming import StreamingVocoder
from speechlm.tokenizers.streaming import StreamingTokenizer
from speechlm.lm.model import build_model, save_speech_lm
from speechlm.lm.vocab import SpeechVocab

from ..conftest import tiny_lm_config


@pytest.fixture(scope="module")
def tok_dir(tiny_corpus, tmp_path_factory):
    from speechlm.tokenizers import train_tokenizer

    return train_tokenizer(tiny_corpus, tmp_path_factory.mktemp("tok") / "mfcc", features="mfcc",
                           units=16, show_progress=False)


@pytest.fixture(scope="module")
def model_dir(tok_dir, tmp_path_factory):
    """An untrained 16-unit LM that records ``tok_dir`` as its tokenizer."""
    vocab = SpeechVocab.for_units(16)
    return save_speech_lm(tmp_path_factory.mktemp("lm") / "m", build_model(tiny_lm_config(vocab), 3),
                          vocab, "speech", str(tok_dir))


@pytest.fixture(scope="module")
def vocoder(tok_dir):
    """An untrained (random-weight) unit vocoder over the same 16 units."""
    import torch

    from speechlm.vocoder.model import VocoderConfig
    from speechlm.vocoder.unit_vocoder import UnitVocoder

    torch.manual_seed(0)
    voc = UnitVocoder(VocoderConfig(vocab_size=16, dim=32, encoder_layers=1,
                                    decoder_layers=1, voc_dim=32, voc_layers=1),
                      ["spk"], str(tok_dir)).eval()
    voc.mean_durations.copy_(torch.arange(16) % 3 + 1)
    return voc


@pytest.fixture(scope="module")
def speech(tiny_corpus):
    from speechlm.data.corpus import Corpus

    return next(iter(Corpus(tiny_corpus).utterances("heldout"))).samples()


def test_generate_stream_writes_the_same_units(model_dir, tmp_path):
    """`speechlm generate ... --stream` (step by step through a Session) == without --stream."""
    outs = {}
    for flag in ([], ["--stream"]):
        out = tmp_path / f"gen{len(flag)}.json"
        assert main(["generate", "--model", str(model_dir), "--prompt-units", "3 4 5 5 9",
                     "--seed", "7", "--samples", "3", "--temperature", "1.0", "--top-k", "8",
                     "--max-new-tokens", "40", "--out", str(out), *flag]) == 0
        outs[bool(flag)] = json.loads(out.read_text())
    assert outs[True]["stream"] and not outs[False]["stream"]
    assert [s["units"] for s in outs[True]["samples"]] == [s["units"] for s in outs[False]["samples"]]
    assert [s["ended"] for s in outs[True]["samples"]] == [s["ended"] for s in outs[False]["samples"]]
    assert sum(len(s["units"]) for s in outs[False]["samples"]) > 10  # something was generated
    assert len({tuple(s["units"]) for s in outs[False]["samples"]}) > 1  # seeds differ


def test_session_listens_responds_and_is_interrupted(model_dir, vocoder, speech):
    pipe = SpeechPipeline.load(model_dir, need_tokenizer=True)
    pipe.vocoder = vocoder
    session = Session(pipe, Sampling(60, 1.0, 8, stop_at_eos=False), seed=1, response_chunk=7)
    assert session.state == "silent"
    assert session.push(np.zeros(1600, dtype=np.float32)).events == []  # silence: nothing happens
    heard, events = [], []
    for start in range(0, speech.size, 1000):  # odd-sized chunks on purpose
        out = session.push(speech[start:start + 1000])
        heard += out.tokens
        events += [e.type for e in out.events]
    assert events[0] == "state" and session.state == "listening" and heard
    out = session.end_turn()
    heard += out.tokens
    assert [e.type for e in out.events] == ["end_of_turn", "state"] and session.state == "speaking"
    # the streamed units are the offline units of the same audio up to look-ahead effects
    offline = pipe.encode_audio(speech)
    assert _edit_rate(heard, offline) < 0.2
    said, audio = [], []
    for _ in range(3):
        step = session.step()
        said += step.tokens
        audio.append(step.audio)
    # 21 tokens sampled; an untrained model also draws specials, which are not units
    assert session.said == 21 and 10 < len(said) <= 21 and all(0 <= u < 16 for u in said)
    assert np.concatenate(audio).size > 0
    # the user speaks again: the response stops at once and a new turn starts
    out = session.push(speech[:3200])
    assert [e.type for e in out.events][:2] == ["interrupted", "state"]
    assert session.state == "listening" and session.turns == 2
    session.end_turn()
    while session.state == "speaking":
        last = session.step()
    assert last.events[-2].type == "end_of_response" and session.state == "silent"
    session.reset()
    assert session.state == "silent" and session.decoder.length == 0 and session.turns == 0
    from speechlm.core.errors import AudioError

    with pytest.raises(AudioError, match=r"session chunk \(turn 0\): audio contains NaN"):
        session.push(np.full(320, np.nan, dtype=np.float32))


def test_speaking_push_returns_audio_of_the_same_length(model_dir, vocoder):
    pipe = SpeechPipeline.load(model_dir)
    pipe.vocoder = vocoder
    session = Session(pipe, Sampling(30, 0.0), seed=0)
    session.push_units([1, 2, 3])
    session.end_turn()
    quiet = np.zeros(640, dtype=np.float32)
    outs = [session.push(quiet) for _ in range(50)]
    assert all(o.audio.size == 640 for o in outs)
    assert session.state == "silent"  # the 30-unit response ended within 50 chunks
    said = [u for o in outs for u in o.tokens]
    assert said == pipe.continue_units([1, 2, 3], Sampling(30, 0.0, stop_at_eos=True))[0]


def test_speak_generates_what_the_audio_needs_and_vocodes_once(model_dir, vocoder):
    """``speak(n)``: units until n samples can be vocoded, one vocoder call; same units as steps."""
    pipe = SpeechPipeline.load(model_dir)
    pipe.vocoder = vocoder
    sampling = Sampling(40, 1.0, 8, stop_at_eos=False)
    by_steps, by_speak = Session(pipe, sampling, seed=3), Session(pipe, sampling, seed=3,
                                                                  response_chunk=2)
    calls = []
    synthesize = vocoder.synthesize
    vocoder.synthesize = lambda *a: calls.append(1) or synthesize(*a)
    try:
        units, spoken = [], []
        for session, said in ((by_steps, units), (by_speak, spoken)):
            session.push_units([1, 2, 3])
            session.end_turn()
        while by_steps.state == "speaking":
            units += by_steps.step().tokens
        calls.clear()
        frames = []
        while by_speak.state == "speaking":
            out = by_speak.speak(1280)
            spoken += out.tokens
            frames.append((out, len(calls)))
            calls.clear()
    finally:
        vocoder.synthesize = synthesize
    assert spoken == units  # the same seeded units, whatever the chunking
    *middle, (last, _) = frames
    assert all(out.audio.size >= 1280 and n == 1 for out, n in middle)  # enough, in one call
    # no more than the audio needs: without its last chunk of 2 it would not have been enough
    durations = vocoder.mean_durations.numpy()
    assert all(durations[out.tokens[:-2]].sum() * 320 < 1280 + 4 * 3 * 320 for out, _ in middle)
    assert last.events[-2].type == "end_of_response" and by_speak.state == "silent"


def test_units_prepared_between_pushes_are_the_same_units_and_audio(model_dir, vocoder):
    """``prepare_push(n)`` between calls: the next push only vocodes, and says and sounds the
    same as without it; an interruption drops what was prepared."""
    pipe = SpeechPipeline.load(model_dir)
    pipe.vocoder = vocoder
    sampling = Sampling(40, 1.0, 8, stop_at_eos=False)
    quiet = np.zeros(1280, dtype=np.float32)
    runs = []
    for ahead in (False, True):
        session = Session(pipe, sampling, seed=5, response_chunk=2)
        session.push_units([1, 2, 3])
        session.end_turn()
        feeds, outs = [], []
        feed = session.decoder.feed
        session.decoder.feed = lambda ids: feeds.append(len(ids)) or feed(ids)
        while session.state == "speaking":
            if ahead:
                while session.prepare_push(1280):
                    pass
            feeds.clear()
            outs.append(session.push(quiet))
            if ahead and session.state == "speaking":
                assert feeds == []  # the push found its units ready: no LM call
        runs.append(([u for o in outs for u in o.tokens], np.concatenate([o.audio for o in outs])))
    (units, audio), (units_ahead, audio_ahead) = runs
    assert units == units_ahead and len(units) > 20  # (special ids drawn are no units)
    np.testing.assert_array_equal(audio, audio_ahead)
    session = Session(pipe, sampling, seed=5, response_chunk=2)
    session.push_units([1, 2, 3])
    session.end_turn()
    while session.prepare_push(1280):
        pass
    assert session.ahead is not None and session.interrupt().events[0].type == "interrupted"
    assert session.ahead is None and not session.prepare_push(1280)


def test_heard_ids_wait_for_feed_heard_with_feed_chunk_none(model_dir):
    session = Session(SpeechPipeline.load(model_dir), Sampling(5, 0.0), feed_chunk=None)
    session.push_units([1, 2, 3])
    assert session.decoder.length == 0 and session.waiting == 4  # <bos> and three units
    session.feed_heard()
    assert session.decoder.length == 4 and session.waiting == 0 and session.history[1:] == [
        session.lm.vocab.encode("units", [u])[0] for u in (1, 2, 3)]


def test_end_turn_with_the_last_audio_is_push_then_end_turn(model_dir, vocoder, speech):
    """The turn's last chunk heard inside ``end_turn``: the same reply, one tokenizer call fewer."""
    pipe = SpeechPipeline.load(model_dir, need_tokenizer=True)
    pipe.vocoder = vocoder
    outs, calls, tokenizer = [], [], pipe.tokenizer
    encode = tokenizer.encode
    tokenizer.encode = lambda *a, **k: calls.append(1) or encode(*a, **k)
    for together in (False, True):
        session = Session(pipe, Sampling(20, 0.0), seed=0, tokenizer_chunk=12)
        for start in range(0, 16_000, 1280):
            session.push(speech[start:start + 1280])
        last = speech[16_000:17_280]
        calls.clear()
        if together:
            session.end_turn(last)
        else:
            session.push(last)
            session.end_turn()
        outs.append((session.history, len(calls), session.state))
    del tokenizer.encode
    (apart, apart_calls, _), (together, together_calls, state) = outs
    assert state == "speaking" and together_calls == 1 <= apart_calls
    assert together[:len(together) // 2] == apart[:len(apart) // 2]  # same units up to look-ahead
    silent = Session(pipe, Sampling(20, 0.0), seed=0)
    assert silent.end_turn(np.zeros(1280, np.float32)).events == []  # not listening: a push


def test_heard_units_fed_in_chunks_give_the_same_reply(model_dir, vocoder, speech):
    """``feed_chunk``: fewer, larger LM calls while listening; the same context, the same reply."""
    pipe = SpeechPipeline.load(model_dir, need_tokenizer=True)
    pipe.vocoder = vocoder
    runs = []
    for feed_chunk in (1, 64):
        session = Session(pipe, Sampling(30, 0.0, stop_at_eos=False), feed_chunk=feed_chunk)
        feeds = []
        feed = session.decoder.feed
        session.decoder.feed = lambda ids: feeds.append(len(ids)) or feed(ids)
        heard = [u for start in range(0, speech.size, 1280)
                 for u in session.push(speech[start:start + 1280]).tokens]
        listening_calls = len(feeds)
        session.end_turn()
        said = []
        while session.state == "speaking":
            said += session.step().tokens
        runs.append((heard, said, session.history, listening_calls))
    (heard_1, said_1, history_1, calls_1), (heard_64, said_64, history_64, calls_64) = runs
    assert heard_1 == heard_64 and history_1 == history_64 and said_1 == said_64
    assert calls_64 <= len(history_64) // 64 < calls_1


def test_the_lean_lm_forward_gives_the_same_conversation(model_dir, vocoder, speech):
    """Sampled replies over two turns on the lean forward and on HF's: the same units, events
    and audio samples, frame by frame (``Decoder`` uses the lean one by default)."""
    from speechlm.generation.sampling import Decoder

    pipe = SpeechPipeline.load(model_dir, need_tokenizer=True)
    pipe.vocoder = vocoder
    runs = []
    for lean in (True, False):
        session = Session(pipe, Sampling(40, 1.0, 8, stop_at_eos=False), seed=5)
        session.decoder = Decoder(pipe.lm.model, lean=lean)
        assert (session.decoder.lean is not None) == lean
        outs = []
        for turn in range(2):
            outs += [session.push(speech[s:s + 1280]) for s in range(0, speech.size, 1280)]
            outs.append(session.end_turn())
            while session.state == "speaking":
                outs.append(session.step())
        runs.append(outs)
    lean_run, hf_run = runs
    assert sum(len(o.tokens) for o in lean_run) > 80  # two replies of 40 units and what was heard
    assert [(o.tokens, [e.type for e in o.events]) for o in lean_run] == \
        [(o.tokens, [e.type for e in o.events]) for o in hf_run]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(lean_run, hf_run))


def _edit_rate(a: list[int], b: list[int]) -> float:
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a, b) / max(1, len(b))


def test_streaming_tokenizer_with_full_context_matches_offline(tok_dir, speech):
    from speechlm.tokenizers import load_tokenizer

    tok = load_tokenizer(tok_dir)
    offline = [int(u) for u in tok.encode(speech, dedup=True)[0]]
    full = StreamingTokenizer(tok, lookahead=10**6, context=10**6)
    units = []
    for start in range(0, speech.size, 777):
        units += full.push(speech[start:start + 777])
    units += full.flush()
    assert units == offline  # nothing fixed before the end: the whole clip, as offline
    chunked = StreamingTokenizer(tok, lookahead=4, context=50)
    units = [u for s in range(0, speech.size, 640) for u in chunked.push(speech[s:s + 640])]
    units += chunked.flush()
    assert _edit_rate(units, offline) < 0.1  # mfcc sees +-3 frames: 4 frames of look-ahead suffice


def test_streaming_vocoder_with_full_context_matches_offline(vocoder):
    units = [3, 7, 1, 1, 9, 4, 12, 0, 5]
    offline = vocoder.synthesize(np.asarray(units), vocoder.mean_durations.numpy()[units])
    stream = StreamingVocoder(vocoder, context=100, lookahead=0)
    whole = stream.push(units)
    assert np.allclose(whole, offline, atol=1e-5)
    chunked = StreamingVocoder(vocoder, context=8, lookahead=3)
    parts = [chunked.push(units[i:i + 2]) for i in range(0, len(units), 2)] + [chunked.flush()]
    audio = np.concatenate(parts)
    assert audio.size == offline.size == int(vocoder.mean_durations[units].sum()) * 320
