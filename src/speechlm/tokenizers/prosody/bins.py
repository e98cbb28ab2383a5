"""Scalar quantisers: value -> bin index -> representative value.

* F0: ``fit_quantiles`` puts the edges at equal-mass quantiles of the (voiced, speaker-normalised)
  training values, as pGSLM does, so every bin is used about equally often.
* Duration: ``duration_bins`` keeps short durations exact (they are most of the units) and
  groups long ones into log-spaced bins; anything longer than ``max_frames`` lands in the last bin.

Each bin decodes to the mean of the training values that fell into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechlm.core.errors import ConfigError, DataError


@dataclass(frozen=True)
class Bins:
    """``edges`` (n - 1,) ascending; bin ``i`` holds ``edges[i-1] <= x < edges[i]``."""

    edges: np.ndarray
    centers: np.ndarray  # (n,) value each bin decodes to

    @property
    def n(self) -> int:
        return self.centers.size

    def encode(self, values: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, np.asarray(values), side="right").astype(np.int64)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        return self.centers[np.asarray(tokens, dtype=np.int64)]

    def check(self, source: str) -> None:
        """Raise naming ``source`` if the arrays cannot be a quantiser (after loading a file)."""
        if (self.edges.ndim != 1 or self.centers.shape != (self.edges.size + 1,)
                or not np.all(np.isfinite(self.edges)) or np.any(np.diff(self.edges) < 0)):
            raise DataError(f"{source}: bin edges {self.edges.shape} / centres {self.centers.shape} "
                            "are not ascending finite edges with one more centre than edges")


def _centers(values: np.ndarray, edges: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, values, side="right")
    sums = np.bincount(index, values, minlength=edges.size + 1)
    counts = np.bincount(index, minlength=edges.size + 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


def fit_quantiles(values: np.ndarray, n_bins: int) -> Bins:
    """Equal-mass bins over ``values`` (e.g. 32 bins of normalised log-F0)."""
    values = np.asarray(values, dtype=np.float64)
    if n_bins < 2:
        raise ConfigError(f"need at least 2 bins, got {n_bins}")
    if values.size < n_bins:
        raise DataError(f"{n_bins} quantile bins need at least {n_bins} training values, got "
                        f"{values.size}")
    edges = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1])
    mids = np.r_[edges[0], (edges[1:] + edges[:-1]) / 2, edges[-1]]
    return Bins(edges, _centers(values, edges, mids))


def duration_bins(durations: np.ndarray, exact: int = 20, max_frames: int = 100,
                  n_bins: int = 32) -> Bins:
    """Durations 1..``exact`` frames exactly, then log-spaced bins up to ``max_frames``; longer
    ones are clipped into the last bin. Centres are the mean training duration per bin."""
    if not 1 <= exact < n_bins - 1 or max_frames <= n_bins:
        raise ConfigError(f"duration bins: need 1 <= exact ({exact}) < n_bins - 1 ({n_bins - 1}) "
                          f"and max_frames ({max_frames}) > n_bins")
    exact_edges = np.arange(1, exact) + 0.5
    log_edges = np.geomspace(exact + 0.5, max_frames + 0.5, n_bins - exact)
    edges = np.r_[exact_edges, log_edges]
    mids = np.r_[np.arange(1, exact + 1), np.sqrt(log_edges[1:] * log_edges[:-1]), max_frames]
    return Bins(edges, _centers(np.asarray(durations, dtype=np.float64), edges, mids))
