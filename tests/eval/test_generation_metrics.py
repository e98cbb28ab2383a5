import math

import numpy as np
import pytest

from speechlm.eval.generation_metrics import (Continuation, auto_bleu, distinct_n,
                                              generation_metrics)


def test_distinct_n_known_values():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n(["a b", "c d"], 2) == 1.0
    assert math.isnan(distinct_n(["a"], 2))


def test_auto_bleu_counts_repeats_inside_each_text():
    assert auto_bleu(["a b a b"], 2) == pytest.approx(2 / 3)  # 'a b' twice, 'b a' once
    assert auto_bleu(["a b c d"], 2) == 0.0
    assert auto_bleu(["a b", "a b"], 2) == 0.0  # repeats across texts do not count


def test_generation_metrics_without_text_lm():
    conts = [Continuation([1], [2, 3, 2, 3], np.zeros(10), np.zeros(5), "the cat the cat")]
    m = generation_metrics(conts)
    assert m["n"] == 1 and m["auto_bleu_2"] == pytest.approx(2 / 3) and "gen_ppl" not in m
