"""Thread-count helpers: a stage's own torch thread setting never leaks to its caller."""

from __future__ import annotations

import pytest
import torch

from speechlm.core.threads import torch_threads, with_torch_threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_torch_threads_sets_and_restores(two_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with torch_threads(None):  # None leaves the setting alone
        assert torch.get_num_threads() == 2


def test_decorator_uses_threads_argument_and_restores_after_errors(two_threads):
    seen = []

    @with_torch_threads
    def stage(x: int, threads: int = 1) -> int:
        seen.append(torch.get_num_threads())
        if x < 0:
            raise ValueError("bad input")
        return x

    assert stage(3) == 3 and stage(3, threads=2) == 3
    with pytest.raises(ValueError):
        stage(-1, 1)
    assert seen == [1, 2, 1] and torch.get_num_threads() == 2


def test_blas_pools_follow_and_are_restored():
    import numpy  # noqa: F401  (loads its BLAS)
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(2, user_api="blas"):  # a busy caller's setting
        with torch_threads(1):
            assert blas() and all(n == 1 for n in blas())
        assert all(n == 2 for n in blas())
