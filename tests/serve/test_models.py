"""Serving a real speech LM (the core's streaming Session): tiny untrained LM, mfcc tokenizer
and random-weight vocoder built here, served through the same interface as every model."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import subprocess
import sys

import numpy as np
import pytest

from speechlm.generation.pipeline import Sampling
from speechlm.serve.client import replay
from speechlm.serve.models import load_model_factory
from speechlm.serve.session import SessionFactory

from ..conftest import tiny_lm_config
from .conftest import speech_like
from .test_cli import speechlm


@pytest.fixture(scope="module")
def model_and_vocoder(tiny_corpus, tmp_path_factory):
    """(model dir, vocoder dir): an untrained 16-unit LM recording an mfcc tokenizer, and a
    random-weight unit vocoder over the same units."""
    import torch

    from speechlm.lm.model import build_model, save_speech_lm
    from speechlm.lm.vocab import SpeechVocab
    from speechlm.tokenizers import train_tokenizer
    from speechlm.vocoder.model import VocoderConfig
    from speechlm.vocoder.unit_vocoder import UnitVocoder

    root = tmp_path_factory.mktemp("served")
    tok = train_tokenizer(tiny_corpus, root / "tok", features="mfcc", units=16, show_progress=False)
    vocab = SpeechVocab.for_units(16)
    model = save_speech_lm(root / "lm", build_model(tiny_lm_config(vocab), 3), vocab, "speech",
                           str(tok))
    torch.manual_seed(0)
    voc = UnitVocoder(VocoderConfig(vocab_size=16, dim=32, encoder_layers=1,
                                    decoder_layers=1, voc_dim=32, voc_layers=1),
                      ["spk"], str(tok)).eval()
    voc.mean_durations.copy_(torch.arange(16) % 3 + 1)
    return model, voc.save(root / "voc")


# an untrained LM may say <eos> at any time: replies here run to their length
LONG = Sampling(max_new_tokens=60, temperature=0.8, top_k=None, stop_at_eos=False)


def test_a_session_answers_after_a_pause_at_once_and_is_interrupted(model_and_vocoder):
    factory = load_model_factory(*model_and_vocoder, sampling=LONG, end_of_turn_ms=320)
    assert isinstance(factory, SessionFactory) and factory.frame_samples == 1280
    factory.warmup()
    session = factory.new_session()
    n = factory.frame_samples
    quiet = np.zeros(n, np.float32)
    heard = [session.push(f) for f in speech_like(0.96).reshape(-1, 1280)]
    assert {o.state for o in heard} == {"listening"} and not any(o.audio.size for o in heard)
    assert sum(len(o.tokens) for o in heard) > 0  # units heard
    outs = [session.push(quiet) for _ in range(4)]  # 320 ms of quiet: the turn ends ...
    answer = outs[-1]
    assert answer.state == "speaking" and "end_of_turn" in answer.events
    # ... and the reply starts in the same call, with at least one frame of audio in hand
    assert answer.audio.size >= n and answer.tokens
    said = [session.push(quiet) for _ in range(3)]
    assert all(o.audio.size == n for o in said)
    # each frame generates only what it plays: units last >= 20 ms, so at most 4 units (two
    # steps of the default response chunk of 2) per 80 ms frame, never a burst of 10
    assert all(len(o.tokens) <= 4 for o in said)
    barge_in = session.push(speech_like(0.08, seed=1))
    assert barge_in.state == "interrupted" and "interrupted" in barge_in.events
    assert barge_in.audio.size == 0
    session.reset()
    assert session.end_turn().state == "silent"  # nothing heard after reset: nothing to answer


def test_the_response_chunk_spreads_the_work_but_says_the_same(model_and_vocoder):
    """Sampling does not depend on how many units a step generates: the same seeded reply."""
    replies = []
    for chunk in (10, 2):
        factory = load_model_factory(*model_and_vocoder, sampling=LONG, end_of_turn_ms=0,
                                     response_chunk=chunk)
        session = factory.new_session()
        for frame in speech_like(0.96).reshape(-1, 1280):
            session.push(frame)
        first, later = session.end_turn(), []
        while not later or later[-1].state == "speaking":  # until the reply has been played
            later.append(session.push(np.zeros(1280, np.float32)))
        units = first.tokens + [t for o in later for t in o.tokens]
        replies.append((units, max(len(o.tokens) for o in later)))
    (units_10, burst_10), (units_2, burst_2) = replies
    assert units_10 == units_2 and len(units_10) > 30  # units heard, then the whole reply
    assert burst_10 > 4 >= burst_2  # (an <eos> drawn mid-reply is no unit)


def test_serving_a_model_end_to_end(model_and_vocoder, start_server):
    # the recipe each worker process loads the model with
    server = start_server(functools.partial(load_model_factory, *model_and_vocoder, sampling=LONG,
                                            end_of_turn_ms=0))
    said = speech_like(1.2)
    result = asyncio.run(asyncio.wait_for(
        replay(server.ws_url, said, 16_000, end_turn=True, tail_s=1.5), 120))
    assert result.handshake["model"] == "lm" and result.errors == []
    assert result.acknowledged + result.dropped == result.frames_sent
    assert result.states[:2] == ["listening", "speaking"]
    assert len(result.first_audio_ms) == 1 and sum(a.size for a in result.audio) > 8000


def test_serve_model_needs_a_vocoder(model_and_vocoder):
    proc = speechlm("serve", "--model", str(model_and_vocoder[0]), "--port", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "pass --vocoder DIR" in err and len(err.strip().splitlines()) == 1


def _slices(session, frame) -> tuple[list, int]:
    """Run one push slice by slice: (LM feeds, vocoder calls) per slice, the reply's slice, the
    reply."""
    lm, voc = session.session.decoder, session.session.speaker.vocoder
    counts = {"feed": 0, "voc": 0}
    feed, synthesize = lm.feed, voc.synthesize
    lm.feed = lambda ids: counts.__setitem__("feed", counts["feed"] + 1) or feed(ids)
    voc.synthesize = lambda *a: counts.__setitem__("voc", counts["voc"] + 1) or synthesize(*a)
    per_slice, reply, output = [], None, None
    try:
        for item in session.slices("push", frame):
            per_slice.append((counts["feed"], counts["voc"]))
            counts.update(feed=0, voc=0)
            if item is not None:
                reply, output = len(per_slice) - 1, item
        per_slice.append((counts["feed"], counts["voc"]))  # the slice that ended the call
    finally:
        del lm.feed, voc.synthesize
    return per_slice, reply, output


def test_the_turn_ending_frame_runs_in_slices_and_later_frames_find_their_units_ready(
        model_and_vocoder):
    factory = dataclasses.replace(load_model_factory(*model_and_vocoder, sampling=LONG,
                                                     end_of_turn_ms=320), feed_chunk=4)
    sliced, plain = factory.new_session(), factory.new_session()
    quiet = np.zeros(1280, np.float32)
    frames = list(speech_like(0.96).reshape(-1, 1280)) + [quiet] * 12
    runs = {"sliced": [], "plain": []}
    checked = fed_after = 0
    for frame in frames:
        expected = plain.push(frame)
        per_slice, reply, output = _slices(sliced, frame)
        runs["plain"].append(expected)
        runs["sliced"].append(output)
        if "end_of_turn" in output.events:  # tokenizer flush + prefill, LM chunks, vocoder
            assert reply >= 3 and all(feeds <= 2 for feeds, _ in per_slice)
            assert per_slice[reply][1] == 1 and sum(v for _, v in per_slice) == 1
            assert sum(f for f, _ in per_slice[reply + 1:]) > 0  # the next frame's units, after
        elif output.state == "speaking" and sliced.session.state == "speaking":
            assert reply == 0 and per_slice[0] == (0, 1)  # the reply only vocodes
            checked += 1
        elif output.state == "listening":
            assert reply == 0 and per_slice[0][0] == 0  # heard ids are fed after the reply
            fed_after += sum(f for f, _ in per_slice[1:])
    assert any("end_of_turn" in o.events for o in runs["sliced"]) and checked >= 5 and fed_after
    for a, b in zip(runs["sliced"], runs["plain"]):  # slices or not: the same conversation
        assert (a.state, a.tokens, a.events) == (b.state, b.tokens, b.events)
        np.testing.assert_array_equal(a.audio, b.audio)
