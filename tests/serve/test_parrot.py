"""The parrot goes through every state: silent, listening, speaking, interrupted."""

import numpy as np

from speechlm.serve.parrot import ParrotFactory
from speechlm.serve.session import SessionFactory, StreamingSession

from .conftest import speech_like


def frames(samples, n):
    return [samples[i:i + n] for i in range(0, samples.size - n + 1, n)]


def test_parrot_repeats_after_a_pause_and_stops_when_interrupted():
    factory = ParrotFactory()
    assert isinstance(factory, SessionFactory)
    session = factory.new_session()
    assert isinstance(session, StreamingSession)
    n = factory.frame_samples
    quiet = np.zeros(n, np.float32)
    assert session.push(quiet).state == "silent"  # nothing said yet
    said = speech_like(0.8)
    outs = [session.push(f) for f in frames(said, n)]
    assert {o.state for o in outs} == {"listening"} and not any(o.audio.size for o in outs)
    outs = [session.push(quiet) for _ in range(6)]  # 480 ms of quiet ends the turn
    assert outs[-1].state == "speaking" and "end_of_turn" in outs[-1].events
    reply = [outs[-1].audio] + [session.push(quiet).audio for _ in range(3)]
    np.testing.assert_array_equal(np.concatenate(reply), said[:4 * n])  # it repeats, in order
    barge_in = session.push(speech_like(0.08, seed=1))
    assert barge_in.state == "interrupted" and barge_in.audio.size == 0
    assert session.push(quiet).audio.size == 0  # the rest of the reply is gone


def test_end_turn_answers_at_once_and_reset_forgets():
    factory = ParrotFactory()
    session = factory.new_session()
    for f in frames(speech_like(0.4), factory.frame_samples):
        session.push(f)
    out = session.end_turn()
    assert out.state == "speaking" and out.audio.size == factory.frame_samples
    session.reset()
    assert session.end_turn().audio.size == 0
