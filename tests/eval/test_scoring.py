import numpy as np
import pytest
import torch

from speechlm.eval.scoring import (SequenceScore, accuracy_ci, compare, score_pairs,
                                   sequence_logprobs, summarize)

from speechlm.eval.testing import BigramModel


def known_model() -> BigramModel:
    # 4 tokens; from token 1 the model strongly prefers 2 over 3.
    table = torch.zeros(4, 4)
    table[1, 2] = 5.0
    table[2, 1] = 2.0
    return BigramModel(table)


def test_logprobs_match_hand_computation_and_batching():
    model = known_model()
    seqs = [[0, 1, 2], [0, 1, 3, 3, 2], [0, 2], [0, 1, 2, 1, 2, 1]]
    expected = [model.logprob(s) for s in seqs]
    for budget in (4, 10, 10_000):  # batch size must not change any score
        got = sequence_logprobs(model, seqs, max_batch_tokens=budget)
        assert [g.n_tokens for g in got] == [len(s) - 1 for s in seqs]
        np.testing.assert_allclose([g.total for g in got], expected, rtol=1e-5)
        assert sequence_logprobs(model, seqs, max_batch_tokens=budget, threads=3) == got


def test_known_answer_pairs():
    model = known_model()
    good = [[0, 1, 2], [0, 1, 2, 1], [0, 3, 1, 2]]
    bad = [[0, 1, 3], [0, 1, 3, 1], [0, 3, 1, 3]]
    result = score_pairs(model, good, bad, groups=["a", "a", "b"])
    assert result["accuracy"] == 1.0 and result["n"] == 3 and result["ties"] == 0
    assert result["groups"]["a"]["n"] == 2
    flipped = score_pairs(model, bad, good)
    assert flipped["accuracy"] == 0.0


def test_ties_count_half():
    model = BigramModel(torch.zeros(5, 5))  # uniform: every same-length sequence ties
    result = score_pairs(model, [[0, 1, 2], [0, 1, 1], [0, 2]], [[0, 3, 4], [0, 1, 1], [0, 2, 2]])
    # two ties (uniform scores, identical sequences), one real win for the shorter sequence
    assert result["ties"] == 2
    assert result["accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    # per-token mean: the 2-token vs 3-token pair ties too under a uniform model
    assert result["accuracy_mean"] == pytest.approx(0.5)


def test_compare_sum_vs_mean():
    good = [SequenceScore(-10.0, 10), SequenceScore(-3.0, 1)]
    bad = [SequenceScore(-12.0, 4), SequenceScore(-4.0, 4)]
    assert compare(good, bad, "sum").tolist() == [1.0, 1.0]
    assert compare(good, bad, "mean").tolist() == [1.0, 0.0]  # -1 > -3 ; -3 < -1


def test_bootstrap_interval():
    acc, (lo, hi) = accuracy_ci(np.ones(50))
    assert acc == 1.0 and lo == 1.0 and hi == 1.0
    outcomes = np.r_[np.ones(70), np.zeros(30)]
    acc, (lo, hi) = accuracy_ci(outcomes, seed=1)
    assert lo < acc == 0.7 < hi and hi - lo < 0.25
    assert accuracy_ci(outcomes, seed=1) == accuracy_ci(outcomes, seed=1)
    assert summarize(outcomes)["n"] == 100


def test_sliding_window_scores_every_token_once():
    model = known_model()  # a bigram model: any window >= 2 gives the exact total
    seq = [0, 1, 2, 1, 3, 3, 2, 1, 2, 2, 1]
    full = sequence_logprobs(model, [seq])[0]
    for window in (2, 3, 4, 7):
        got = sequence_logprobs(model, [seq, seq[:3]], window=window, max_batch_tokens=8)
        assert got[0].n_tokens == len(seq) - 1 and got[1].n_tokens == 2
        assert got[0].total == pytest.approx(full.total, rel=1e-5)


def test_only_tokens_from_start_are_scored():
    """A StoryCloze item scores its ending alone: the sum and the count cover positions >= start,
    with or without a sliding window."""
    model = known_model()
    seq = [0, 1, 2, 1, 3, 3, 2, 1, 2]
    for start in (1, 3, 6, len(seq)):
        expected = model.logprob(seq[start - 1:])  # a bigram: the same transitions from start on
        for window in (None, 3, 4):
            got = sequence_logprobs(model, [seq], window=window, starts=[start])[0]
            assert got.n_tokens == len(seq) - start
            assert got.total == pytest.approx(expected, rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="outside"):
        sequence_logprobs(model, [seq], starts=[0])


def test_per_token_mean_is_over_the_continuation():
    """An unlikely shared context drags the short good item's whole-sequence mean below the long
    bad item's; over the endings alone the good item has the higher mean. score_pairs compares
    the endings when given where they start."""
    model = known_model()
    context = [0, 1, 3, 1, 3, 1, 3]            # 1 -> 3 is unlikely under the model
    good, bad = context + [1, 2], context + [0] * 8
    whole = score_pairs(model, [good], [bad])
    ending = score_pairs(model, [good], [bad], good_starts=[len(context)],
                         bad_starts=[len(context)])
    assert (whole["accuracy_mean"], ending["accuracy_mean"]) == (0.0, 1.0)
    assert whole["accuracy"] == ending["accuracy"] == 1.0  # sums: the shared context cancels
    assert (whole["mean_tokens"], ending["mean_tokens"]) == ((8 + 14) / 2, (2 + 8) / 2)
