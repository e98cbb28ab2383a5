"""Token layouts: how K parallel token streams ``(K, T)`` become the rows the model reads, and back.

A layout is a pattern: for each model row ``r`` and sequence step ``s`` it names the code it
holds, ``(stream k, frame t)``, or nothing (padding / a special position). Build and revert are
the same gather/scatter for every layout, so model, loss and sampler never special-case one::

    flatten       R = 1, S = K*T   the K codes of a frame one after another (one token stream)
    parallel      R = K, S = T     all K codes of a frame at one step
    delay         R = K, S = T + max(delays)   stream k shifted right by delays[k] (MusicGen, Moshi)
    coarse_first  R = K, S = 2T    stream 0 for every frame first, then streams 1..K-1 of each frame
                                   together (VALL-E's order: coarse AR, then the rest of a frame)

``build`` returns the valid mask with the tokens: it marks exactly the real codes, and it is what
losses and metrics use (invalid positions hold ``pad`` and get label -100).

>>> import numpy as np
>>> layout = get_layout("delay", 2, delays=[0, 1])
>>> tokens, valid = layout.build(np.array([[1, 2, 3], [4, 5, 6]]), pad=-1)
>>> tokens.tolist(), valid.sum()
([[1, 2, 3, -1], [-1, 4, 5, 6]], np.int64(6))
>>> layout.revert(tokens).tolist()
[[1, 2, 3], [4, 5, 6]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechlm.core.errors import ConfigError, DataError

LAYOUTS = ("flatten", "parallel", "delay", "coarse_first")


@dataclass(frozen=True)
class Layout:
    """``name`` over ``n_streams`` streams; ``delays`` only for ``delay``."""

    name: str
    n_streams: int
    delays: tuple[int, ...] = ()

    @property
    def n_rows(self) -> int:
        """Rows the model reads per step: 1 for flatten (one token stream), else K."""
        return 1 if self.name == "flatten" else self.n_streams

    def n_steps(self, n_frames: int) -> int:
        K, T = self.n_streams, n_frames
        if self.name == "flatten":
            return K * T
        if self.name == "delay":
            return T + max(self.delays)
        if self.name == "coarse_first":
            return 2 * T if K > 1 else T
        return T

    def n_frames(self, n_steps: int) -> int:
        """Inverse of :meth:`n_steps` (for sequences built by this layout)."""
        K, S = self.n_streams, n_steps
        if self.name == "flatten":
            return S // K
        if self.name == "delay":
            return max(0, S - max(self.delays))
        if self.name == "coarse_first":
            return S // 2 if K > 1 else S
        return S

    def positions(self, n_frames: int) -> np.ndarray:
        """(R, S) int64: ``k * T + t`` for the code ``(k, t)`` at each position, -1 where none."""
        K, T = self.n_streams, n_frames
        S = self.n_steps(T)
        pos = np.full((self.n_rows, S), -1, dtype=np.int64)
        k = np.arange(K)[:, None]              # (K, 1)
        t = np.arange(T)[None, :]              # (1, T)
        flat = k * T + t                       # (K, T)
        if self.name == "flatten":
            pos[0, (t * K + k).reshape(-1)] = flat.reshape(-1)
        elif self.name == "parallel":
            pos[:, :] = flat
        elif self.name == "delay":
            for row, d in enumerate(self.delays):
                pos[row, d:d + T] = flat[row]
        else:  # coarse_first: stream 0 at steps 0..T-1, streams 1.. of frame t at step T + t
            pos[0, :T] = flat[0]
            if K > 1:
                pos[1:, T:] = flat[1:]
        return pos

    def build(self, codes: np.ndarray, pad: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """``(K, T)`` codes -> ``(tokens (R, S), valid (R, S) bool)``; invalid positions hold ``pad``."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != self.n_streams:
            raise DataError(f"layout {self.name}: expected codes of shape (K={self.n_streams}, T), "
                            f"got {codes.shape}")
        pos = self.positions(codes.shape[1])
        valid = pos >= 0
        tokens = np.full(pos.shape, pad, dtype=codes.dtype)
        tokens[valid] = codes.reshape(-1)[pos[valid]]
        return tokens, valid

    def revert(self, tokens: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """``(R, S)`` tokens -> ``(K, T)`` codes (T from S unless given; extra steps are ignored)."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[0] != self.n_rows:
            raise DataError(f"layout {self.name}: expected tokens of shape (R={self.n_rows}, S), "
                            f"got {tokens.shape}")
        T = self.n_frames(tokens.shape[1]) if n_frames is None else n_frames
        pos = self.positions(T)
        if pos.shape[1] > tokens.shape[1]:
            raise DataError(f"layout {self.name}: {tokens.shape[1]} steps hold fewer than {T} frames")
        valid = pos >= 0
        codes = np.empty(self.n_streams * T, dtype=tokens.dtype)
        codes[pos[valid]] = tokens[:, :pos.shape[1]][valid]
        return codes.reshape(self.n_streams, T)

    def to_dict(self) -> dict:
        return {"name": self.name, "n_streams": self.n_streams, "delays": list(self.delays)}


def get_layout(name: str, n_streams: int, delays: Sequence[int] | None = None) -> Layout:
    """The layout ``name`` for ``n_streams`` streams; ``delays`` (one per stream, >= 0) for
    ``delay`` (default ``0, 1, ..., K-1``)."""
    if name not in LAYOUTS:
        raise ConfigError(f"layout {name!r} is not one of {list(LAYOUTS)}")
    if n_streams < 1:
        raise ConfigError(f"layout {name}: n_streams={n_streams} must be >= 1")
    if name != "delay":
        if delays:
            raise ConfigError(f"layout {name}: delays are only for the delay layout")
        return Layout(name, n_streams)
    delays = tuple(range(n_streams)) if delays is None else tuple(int(d) for d in delays)
    if len(delays) != n_streams or min(delays) < 0:
        raise ConfigError(f"layout delay: delays={list(delays)} must be {n_streams} values >= 0")
    return Layout(name, n_streams, delays)
