"""k-means quantisation of frame features (faiss) and run-length deduplication."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from speechlm.core.errors import CheckpointError, DataError

log = logging.getLogger(__name__)


def dedup(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length encode: [5, 5, 7, 5] -> units [5, 7, 5], durations [2, 1, 1] (int64).

    >>> dedup(np.array([5, 5, 7, 5]))
    (array([5, 7, 5]), array([2, 1, 1]))
    """
    units = np.asarray(units, dtype=np.int64)
    if units.size == 0:
        return units, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    durations = np.diff(np.r_[starts, units.size])
    return units[starts], durations.astype(np.int64)


def undedup(units: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Inverse of :func:`dedup`: one unit per frame."""
    return np.repeat(np.asarray(units, dtype=np.int64), np.asarray(durations, dtype=np.int64))


class KMeansQuantizer:
    """Globally standardised features -> nearest of K centroids (squared L2).

    ``weights`` (D,) scales each standardised dimension; a feature made of several blocks (e.g.
    Whisper states + log-mel) gives each block the same total weight with ``1 / sqrt(block
    width)``, so a 384-wide block does not outvote an 80-wide one by its width alone.
    """

    def __init__(self, centroids: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 weights: np.ndarray | None = None) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)  # (K, D)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.weights = (np.ones_like(self.mean) if weights is None
                        else np.asarray(weights, dtype=np.float32))
        self._sq_norms = (self.centroids ** 2).sum(axis=1)

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    def normalize(self, feats: np.ndarray) -> np.ndarray:
        return (feats - self.mean) / self.std * self.weights

    def assign(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) raw features -> (N,) int64 cluster ids."""
        return self.assign_normalized(self.normalize(feats))

    def assign_normalized(self, x: np.ndarray) -> np.ndarray:
        """Like :meth:`assign` for features already passed through :meth:`normalize`."""
        dist = self._sq_norms[None, :] - 2.0 * x @ self.centroids.T  # |x|^2 is constant per row
        return dist.argmin(axis=1).astype(np.int64)

    @classmethod
    def fit(cls, feats: np.ndarray, k: int, seed: int = 0, max_points: int = 100_000,
            niter: int = 25, threads: int = 1, weights: np.ndarray | None = None) -> KMeansQuantizer:
        """faiss k-means on a random subsample of at most ``max_points`` frames of standardised
        (and ``weights``-scaled) features."""
        import faiss

        feats = np.asarray(feats, dtype=np.float32)
        if feats.shape[0] < k:
            raise DataError(f"k-means with K={k} needs at least {k} frames; got {feats.shape[0]}")
        rng = np.random.default_rng(seed)
        if feats.shape[0] > max_points:
            feats = feats[rng.choice(feats.shape[0], max_points, replace=False)]
        mean = feats.mean(axis=0)
        std = feats.std(axis=0) + 1e-5
        weights = np.ones_like(mean) if weights is None else np.asarray(weights, np.float32)
        if weights.shape != mean.shape:
            raise DataError(f"k-means: {weights.shape[0]} weights for {mean.shape[0]}-dim features")
        x = np.ascontiguousarray((feats - mean) / std * weights, dtype=np.float32)
        faiss.omp_set_num_threads(threads)
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False,
                          max_points_per_centroid=max(256, x.shape[0] // k + 1))
        km.train(x)
        log.info("k-means K=%d on %d x %d frames: objective %.4g", k, *x.shape, km.obj[-1])
        return cls(km.centroids, mean, std, weights)

    def save(self, path: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"centroids": self.centroids, "mean": self.mean, "std": self.std,
                   "weights": self.weights}, str(path))

    @classmethod
    def load(cls, path: Path) -> KMeansQuantizer:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        if not path.is_file():
            raise CheckpointError(f"{path}: missing centroids file")
        try:
            tensors = load_file(str(path))
            return cls(tensors["centroids"], tensors["mean"], tensors["std"], tensors.get("weights"))
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            raise CheckpointError(f"{path}: corrupt centroids file ({err})") from None
