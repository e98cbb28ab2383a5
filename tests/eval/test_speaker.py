"""Resemblyzer speaker embeddings: weights_only loading, unit norm, same voice > other voice."""

from __future__ import annotations

import numpy as np
import pytest

from speechlm.core.errors import AudioError, CheckpointError
from speechlm.eval.speaker import SpeakerEncoder, speaker_encoder, speaker_similarity


@pytest.fixture(scope="module")
def voices():
    from speechlm.data.tts import Espeak, Voice

    tts = Espeak()
    text = ["The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore."]
    return {name: [tts.synthesize(t, Voice(name, rate=160, pitch=pitch, range=50)).samples for t in text]
            for name, pitch in (("en-us+m3", 35), ("en+f2", 75))}


def test_embeddings_are_unit_norm_and_separate_voices(voices):
    enc = speaker_encoder()
    (a1, a2), (b1, _) = voices.values()
    e = enc.embed(a1)
    assert e.shape == (256,) and e.dtype == np.float32
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    same, other = speaker_similarity(a1, a2), speaker_similarity(a1, b1)
    assert same > other
    assert speaker_similarity(a1, a1) == pytest.approx(1.0, abs=1e-5)


def test_bad_audio_and_missing_weights(tmp_path):
    with pytest.raises(AudioError, match="empty or has NaN"):
        speaker_encoder().embed(np.array([np.nan, 0.0], dtype=np.float32))
    with pytest.raises(CheckpointError, match="nope.pt"):
        SpeakerEncoder(tmp_path / "nope.pt")
