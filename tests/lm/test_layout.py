"""Token layouts: build/revert round trips and the valid mask, as properties over random K, T, delays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechlm.core.errors import ConfigError, DataError
from speechlm.lm.layout import LAYOUTS, get_layout


@st.composite
def layout_and_codes(draw):
    name = draw(st.sampled_from(LAYOUTS))
    K = draw(st.integers(1, 6))
    T = draw(st.integers(0, 40))
    delays = draw(st.lists(st.integers(0, 5), min_size=K, max_size=K)) if name == "delay" else None
    seed = draw(st.integers(0, 2**31 - 1))
    codes = np.random.default_rng(seed).integers(0, 1000, size=(K, T))
    return get_layout(name, K, delays), codes


@settings(max_examples=300, deadline=None, derandomize=True)
@given(layout_and_codes())
def test_revert_of_build_is_identity_and_mask_marks_exactly_the_codes(case):
    layout, codes = case
    K, T = codes.shape
    tokens, valid = layout.build(codes, pad=-7)
    assert tokens.shape == valid.shape == (layout.n_rows, layout.n_steps(T))
    assert np.array_equal(layout.revert(tokens), codes)
    assert np.array_equal(layout.revert(tokens, n_frames=T), codes)
    # the mask marks exactly K*T positions, each real code appears once, the rest is padding
    assert valid.sum() == K * T
    assert sorted(tokens[valid].tolist()) == sorted(codes.ravel().tolist())
    assert (tokens[~valid] == -7).all()
    pos = layout.positions(T)
    assert np.array_equal(pos >= 0, valid)
    assert np.array_equal(np.sort(pos[valid]), np.arange(K * T))
    assert np.array_equal(tokens[valid], codes.reshape(-1)[pos[valid]])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(layout_and_codes())
def test_a_code_never_appears_before_an_earlier_frame_of_its_stream(case):
    """Causality of every layout: within a stream, frame t is read after frames < t."""
    layout, codes = case
    K, T = codes.shape
    pos = layout.positions(T)
    step_of = np.empty(K * T, dtype=np.int64)
    rows, steps = np.nonzero(pos >= 0)
    step_of[pos[rows, steps]] = steps
    per_stream = step_of.reshape(K, T)
    assert (np.diff(per_stream, axis=1) > 0).all() if T > 1 else True


def test_the_four_layouts_on_a_hand_computed_case():
    codes = np.array([[1, 2, 3], [4, 5, 6]])
    expect = {
        "flatten": [[1, 4, 2, 5, 3, 6]],
        "parallel": [[1, 2, 3], [4, 5, 6]],
        "delay": [[1, 2, 3, 0], [0, 4, 5, 6]],
        "coarse_first": [[1, 2, 3, 0, 0, 0], [0, 0, 0, 4, 5, 6]],
    }
    for name, tokens in expect.items():
        built, valid = get_layout(name, 2).build(codes, pad=0)
        assert built.tolist() == tokens, name
        assert valid.sum() == 6
    tokens, valid = get_layout("delay", 2, [2, 0]).build(codes, pad=0)
    assert tokens.tolist() == [[0, 0, 1, 2, 3], [4, 5, 6, 0, 0]]


def test_bad_layouts_and_shapes_are_clear_errors():
    with pytest.raises(ConfigError, match="not one of"):
        get_layout("zigzag", 2)
    with pytest.raises(ConfigError, match=r"delays=\[0\] must be 2 values"):
        get_layout("delay", 2, [0])
    with pytest.raises(ConfigError, match="only for the delay layout"):
        get_layout("parallel", 2, [0, 1])
    with pytest.raises(DataError, match=r"expected codes of shape \(K=3, T\)"):
        get_layout("parallel", 3).build(np.zeros((2, 4), dtype=int))
