"""ABX, PNMI and bitrate on cases with known answers, and the full evaluation on a tiny corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speechlm.core.errors import DataError
from speechlm.eval.tokenizer_metrics import (Segment, abx_error, bitrate, dtw_cost, evaluate_tokenizer,
                                             phone_frames, phone_segments, pnmi, sample_triplets)


def test_pnmi_known_answers():
    phones = np.repeat(np.arange(4), 250)
    assert pnmi(phones, phones + 10) == pytest.approx(1.0)          # a bijection
    assert pnmi(phones, phones // 2) == pytest.approx(0.5)          # 4 equiprobable phones -> 2 units
    rng = np.random.default_rng(0)
    assert pnmi(rng.integers(0, 4, 20000), rng.integers(0, 50, 20000)) < 0.01
    with pytest.raises(DataError):
        pnmi(np.array([]), np.array([]))


def test_bitrate_known_answer():
    result = bitrate([np.array([0, 1, 0, 1])], seconds=2.0)
    assert result["tokens_per_second"] == 2.0 and result["unit_entropy_bits"] == pytest.approx(1.0)
    assert result["bitrate"] == pytest.approx(2.0) and result["units_used"] == 2


def test_dtw_cost():
    a = np.eye(3)
    assert dtw_cost(np.zeros((2, 5))) == 0.0
    dist = 1 - a @ a.T  # identical one-hot sequences
    assert dtw_cost(dist) == 0.0
    assert dtw_cost(np.ones((3, 4))) == pytest.approx(1.0)
    # a stretched copy aligns for free
    stretched = np.repeat(a, 2, axis=0)
    assert dtw_cost(1 - a @ stretched.T) == 0.0


def test_frame_labels():
    phones = [("a", 0.0, 0.052), ("b", 0.052, 0.068), ("c", 0.068, 0.1)]  # centres 0.01, 0.03, ..
    assert phone_frames(phones, 5, 50.0) == ["a", "a", "a", "c", "c"]  # "b" covers no frame centre
    segs = phone_segments(phones, 5, 50.0)
    assert [s[0] for s in segs] == ["a", "b", "c"] and all(e > s for _, s, e in segs)  # "b" gets a frame


def _segments(informative: bool, seed: int = 0) -> list[Segment]:
    rng = np.random.default_rng(seed)
    out = []
    for speaker in ("s1", "s2", "s3"):
        for phone in range(6):
            for _ in range(4):
                n = int(rng.integers(2, 6))
                if informative:  # the phone identity, plus a little noise and a speaker offset
                    frames = np.tile(np.eye(8)[phone], (n, 1)) + rng.normal(0, 0.05, (n, 8))
                    frames[:, 7] += 0.3 * int(speaker[1])
                else:
                    frames = rng.normal(size=(n, 8))
                out.append(Segment(speaker, f"p{phone}", frames))
    return out


@pytest.mark.parametrize("across", [False, True])
def test_abx_known_answers(across):
    good = _segments(True)
    triplets = sample_triplets(good, 400, across, seed=0)
    assert len(triplets) == 400
    for ia, ib, ix in triplets:
        assert good[ia].phone == good[ix].phone != good[ib].phone
        assert good[ia].speaker == good[ib].speaker
        assert (good[ix].speaker != good[ia].speaker) == across
        assert ia != ix
    assert abx_error(good, triplets) == 0.0
    noise = _segments(False)
    assert 0.4 < abx_error(noise, sample_triplets(noise, 400, across, seed=0)) < 0.6


def test_abx_needs_triplets():
    with pytest.raises(DataError, match="no valid triplets"):
        abx_error([], sample_triplets([Segment("s", "a", np.zeros((1, 2)))], 10, True, 0))


def test_evaluate_tokenizer_on_tiny_corpus(tiny_corpus, tmp_path):
    from speechlm.tokenizers import train_tokenizer

    tok = train_tokenizer(tiny_corpus, tmp_path / "tok", features="mfcc", units=16, show_progress=False)
    result = evaluate_tokenizer(tok, tiny_corpus, split="train", n_triplets=200, show_progress=False)
    for key in ("abx_within", "abx_across", "pnmi", "bitrate"):
        assert math.isfinite(result[key])
    # MFCC units carry phone information: clearly better than chance, clearly not perfect
    assert result["abx_within"] < 0.4 and result["abx_across"] < 0.45
    assert 0.1 < result["pnmi"] < 0.9
    assert 0 < result["bitrate"] <= result["tokens_per_second"] * 4 + 1e-9  # log2(16) = 4 bits
