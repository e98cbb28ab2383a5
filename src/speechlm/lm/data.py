"""Token sequences -> packed fixed-length training blocks, deterministic for (seed, epoch).

Each utterance becomes ``ids + [EOS]``; utterances are shuffled with a seeded generator per
epoch, concatenated and cut into blocks of ``seq_len`` tokens (the tail of an epoch is dropped),
so no token is padding. The data position is one integer, the global block cursor, which makes
resuming exact: ``epoch = cursor // blocks_per_epoch``. Validation blocks are not shuffled and the
last partial block is kept with ``-100`` labels on its padding.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from speechlm.core.errors import DataError
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)

IGNORE = -100


def to_token_ids(sequences: list[np.ndarray], vocab: SpeechVocab, family: str,
                 source: str) -> list[np.ndarray]:
    """Family-local ids -> global ids, checking the range (tokenizer/model vocabulary mismatch)."""
    fam = vocab.family(family)
    out = []
    for i, seq in enumerate(sequences):
        if seq.size and (seq.min() < 0 or seq.max() >= fam.size):
            raise DataError(f"{source}: row {i} has {family} id {int(seq.max())} outside 0.."
                            f"{fam.size - 1}; the data and the model vocabulary come from "
                            f"different tokenizers")
        out.append(seq + fam.offset)
    return out


class PackedBlocks:
    """Training blocks of ``seq_len`` tokens over shuffled utterances; ``blocks(cursor, n)``."""

    def __init__(self, sequences: list[np.ndarray], seq_len: int, eos_id: int, seed: int,
                 source: str = "train data") -> None:
        self.sequences = sequences
        self.seq_len = seq_len
        self.eos_id = eos_id
        self.seed = seed
        total = sum(len(s) + 1 for s in sequences)
        self.blocks_per_epoch = total // seq_len
        if self.blocks_per_epoch == 0:
            raise DataError(f"{source}: {len(sequences)} utterances / {total} tokens, fewer than "
                            f"one block of seq_len={seq_len}; the dataset is empty or too small")
        self.tokens = self.blocks_per_epoch * seq_len
        self._epoch: int | None = None
        self._packed: np.ndarray | None = None

    def _pack(self, epoch: int) -> np.ndarray:
        if self._epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.sequences))
            parts = []
            for i in order:
                parts.append(self.sequences[i])
                parts.append(np.array([self.eos_id], dtype=np.int64))
            flat = np.concatenate(parts)[: self.tokens]
            self._packed = flat.reshape(self.blocks_per_epoch, self.seq_len)  # (N, T)
            self._epoch = epoch
        return self._packed

    def blocks(self, cursor: int, n: int) -> torch.Tensor:
        """Blocks ``cursor .. cursor+n-1`` (crossing epochs as needed) as a (n, T) int64 tensor."""
        rows = []
        for c in range(cursor, cursor + n):
            epoch, idx = divmod(c, self.blocks_per_epoch)
            rows.append(self._pack(epoch)[idx])
        return torch.from_numpy(np.stack(rows))


def valid_blocks(sequences: list[np.ndarray], seq_len: int, eos_id: int, pad_id: int,
                 max_blocks: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation ``(input_ids, labels)``, each (N, T), in file order; padding has label -100."""
    if not sequences:
        raise DataError("validation split is empty")
    flat = np.concatenate([np.append(s, eos_id) for s in sequences])
    n = -(-len(flat) // seq_len)
    if max_blocks is not None:
        n = min(n, max_blocks)
        flat = flat[: n * seq_len]
    ids = np.full(n * seq_len, pad_id, dtype=np.int64)
    ids[: len(flat)] = flat
    labels = ids.copy()
    labels[len(flat):] = IGNORE
    return torch.from_numpy(ids.reshape(n, seq_len)), torch.from_numpy(labels.reshape(n, seq_len))
