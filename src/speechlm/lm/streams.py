"""The token space a model reads: K token streams, their families in a SpeechVocab, and a layout.

A tokenized utterance is a ``(K, T)`` array of family-local codes, one row per stream (K = 1 is
today's units). :class:`TokenSpace` turns it into model ids through the layout:

* one model row (``flatten``, and every K = 1 model): ids live in the joint vocabulary, each
  position in the offset block of its stream's family (a plain HF causal LM reads them);
* K model rows (``parallel``, ``delay``, ``coarse_first``): row ``r`` has its own small vocabulary,
  the shared specials followed by stream ``r``'s family, so each row has its own embedding table
  and head (:mod:`speechlm.lm.multistream`).

Positions that hold no code (delay padding, the idle rows of coarse_first) hold ``<pad>``.
``prefix`` names families that may precede the codes in row 0 as conditioning (phonemes, task
markers, semantic units): row 0's vocabulary is then specials + prefix families + stream 0.

>>> space = TokenSpace(SpeechVocab.for_units(10), ("units",), get_layout("flatten", 1))
>>> ids, stream = space.encode(np.array([[0, 9]]))
>>> ids.tolist(), stream.tolist(), space.decode(ids).tolist()
([[4, 13]], [[0, 0]], [[0, 9]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechlm.core.errors import DataError
from speechlm.lm.layout import Layout, get_layout
from speechlm.lm.vocab import SpeechVocab


@dataclass(frozen=True)
class TokenSpace:
    vocab: SpeechVocab              # every stream's family (the joint id space of flatten)
    streams: tuple[str, ...]        # family name of each stream, K of them
    layout: Layout
    prefix: tuple[str, ...] = ()    # conditioning families read in row 0 before the codes

    def __post_init__(self) -> None:
        for name in (*self.streams, *self.prefix):
            self.vocab.family(name)  # raises naming the missing family
        if self.layout.n_streams != len(self.streams):
            raise DataError(f"layout {self.layout.name} is for {self.layout.n_streams} streams, "
                            f"the token space has {len(self.streams)}: {list(self.streams)}")

    @classmethod
    def single(cls, vocab: SpeechVocab, family: str = "units") -> TokenSpace:
        """One stream read as one token stream: every K = 1 model (units, text)."""
        return cls(vocab, (family,), get_layout("flatten", 1))

    @property
    def n_streams(self) -> int:
        return len(self.streams)

    @property
    def n_rows(self) -> int:
        return self.layout.n_rows

    def row_vocab(self, row: int) -> SpeechVocab:
        """The ids of model row ``row``: the joint vocab for one row, else specials + that stream
        (row 0: specials + the prefix families + stream 0)."""
        if self.n_rows == 1:
            return self.vocab
        vocab = SpeechVocab.default()
        for name in (*self.prefix, self.streams[0]) if row == 0 else (self.streams[row],):
            fam = self.vocab.family(name)
            vocab = vocab.add_family(fam.name, fam.size, kind=fam.kind, labels=fam.labels, **fam.meta)
        return vocab

    def prefix_ids(self, family: str, local) -> np.ndarray:
        """Family-local ids of prefix ``family`` -> ``(R, n)`` model ids: row 0 holds them, the
        other rows ``<pad>``."""
        if family not in self.prefix:
            raise DataError(f"token space has no prefix family {family!r} (it has {list(self.prefix)})")
        row0 = np.asarray(self.row_vocab(0).encode(family, list(local)), dtype=np.int64)
        ids = np.full((self.n_rows, row0.size), self.vocab.pad_id, dtype=np.int64)
        ids[0] = row0
        return ids

    @property
    def row_sizes(self) -> tuple[int, ...]:
        return tuple(self.row_vocab(r).size for r in range(self.n_rows))

    def _offsets(self) -> np.ndarray:
        """(K,) id offset of each stream's codes in its row's vocabulary."""
        if self.n_rows == 1:
            return np.array([self.vocab.family(s).offset for s in self.streams], dtype=np.int64)
        return np.array([self.row_vocab(k).family(s).offset for k, s in enumerate(self.streams)],
                        dtype=np.int64)

    def code_ranges(self) -> list[tuple[int, int]]:
        """Per stream, the ``[start, stop)`` ids its codes take in its row's vocabulary."""
        return [(int(off), int(off) + self.vocab.family(name).size)
                for off, name in zip(self._offsets(), self.streams)]

    def check(self, codes: np.ndarray, source: str) -> np.ndarray:
        """``codes`` as a (K, T) int64 array; DataError naming ``source`` when a code is out of range."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] != self.n_streams:
            raise DataError(f"{source}: expected {self.n_streams} stream(s) {list(self.streams)}, "
                            f"got an array of shape {codes.shape}")
        for k, name in enumerate(self.streams):
            size = self.vocab.family(name).size
            row = codes[k]
            if row.size and (row.min() < 0 or row.max() >= size):
                bad = int(row.max() if row.max() >= size else row.min())
                raise DataError(f"{source}: {name} id {bad} outside 0..{size - 1}; the data and "
                                f"the model vocabulary come from different tokenizers")
        return codes

    def encode(self, codes: np.ndarray, source: str = "tokens") -> tuple[np.ndarray, np.ndarray]:
        """(K, T) codes -> ``(ids (R, S), stream (R, S))``: model ids (``<pad>`` where no code) and
        the stream each position holds (-1 where none; the valid mask is ``stream >= 0``)."""
        codes = self.check(codes, source)
        T = codes.shape[1]
        pos = self.layout.positions(T)                      # (R, S)
        valid = pos >= 0
        stream = np.where(valid, pos // max(T, 1), -1)
        ids = np.full(pos.shape, self.vocab.pad_id, dtype=np.int64)
        ids[valid] = codes.reshape(-1)[pos[valid]] + self._offsets()[stream[valid]]
        return ids, stream

    def decode(self, ids: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """(R, S) model ids -> (K, T) codes (the inverse of :meth:`encode`)."""
        ids = np.asarray(ids, dtype=np.int64)
        T = self.layout.n_frames(ids.shape[1]) if n_frames is None else n_frames
        pos = self.layout.positions(T)
        valid = pos >= 0
        stream = np.where(valid, pos // max(T, 1), -1)
        local = ids.copy()
        local[:, :pos.shape[1]][valid] -= self._offsets()[stream[valid]]
        return self.layout.revert(local, T)

    def to_dict(self) -> dict:
        return {"streams": list(self.streams), "layout": self.layout.name,
                "delays": list(self.layout.delays) or None, "prefix": list(self.prefix)}
