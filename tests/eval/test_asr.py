"""pocketsphinx transcription and WER."""

from __future__ import annotations

import numpy as np
import pytest

from speechlm.core.errors import DataError
from speechlm.eval.asr import normalize, transcribe, wer


def test_normalize_and_wer_known_answers():
    assert normalize("Hello, World!  It's 'fine'.") == "hello world it's fine"
    assert wer(["a b c"], ["a x c"]) == pytest.approx(1 / 3)
    assert wer(["The cat.", "sat on"], ["the cat", "sat on"]) == 0.0
    assert wer(["one two"], [""]) == 1.0
    with pytest.raises(DataError):
        wer(["a"], ["a", "b"])


def test_transcribe_recognises_speech_better_than_noise(tiny_corpus):
    from speechlm.data.corpus import Corpus

    utts = [u for _, u in zip(range(3), Corpus(tiny_corpus).utterances("train"))]
    hyps = [transcribe(u.samples()) for u in utts]
    assert all(isinstance(h, str) for h in hyps)
    assert wer([u.text for u in utts], hyps) < 0.9
    noise = transcribe(np.zeros(16000, np.float32))
    assert wer([utts[0].text], [noise]) >= 0.9
