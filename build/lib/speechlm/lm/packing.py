"""Examples -> fixed-length training blocks, deterministic for (seed, epoch); any builder, any K.

Training: examples are shuffled with a seeded generator per epoch, concatenated along the
sequence axis and cut into blocks of ``seq_len`` steps (the tail of an epoch is dropped), so no
position is padding. The data position is one integer, the global block cursor, which makes
resuming exact: ``epoch = cursor // blocks_per_epoch``. Evaluation blocks keep file order and the
last partial block is padded with ``<pad>`` inputs and ``-100`` labels.

Blocks are ``(B, T)`` tensors for one-row models (a plain HF causal LM) and ``(B, R, T)`` for
multi-row ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from speechlm.core.errors import DataError
from speechlm.lm.sequences import IGNORE, Example


@dataclass
class Batch:
    """What the loop feeds the loss: ``input_ids``, ``labels`` and optional ``loss_weights``."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    loss_weights: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.input_ids), move(self.labels), move(self.loss_weights))

    def __getitem__(self, index: slice) -> Batch:
        return Batch(self.input_ids[index], self.labels[index],
                     None if self.loss_weights is None else self.loss_weights[index])

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.input_ids.shape[0] * self.input_ids.shape[-1]


def _concat(examples: Sequence[Example], order: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The examples one after another along the sequence axis: ``(R, total)`` arrays."""
    chosen = [examples[i] for i in (order if order is not None else range(len(examples)))]
    out = {"input_ids": np.concatenate([e.input_ids for e in chosen], axis=1),
           "labels": np.concatenate([e.labels for e in chosen], axis=1)}
    if chosen[0].loss_weights is not None:
        out["loss_weights"] = np.concatenate([e.loss_weights for e in chosen], axis=1)
    return out


def _blocks(arrays: dict[str, np.ndarray], n_blocks: int, seq_len: int) -> dict[str, np.ndarray]:
    """``(R, n_blocks * seq_len)`` -> ``(n_blocks, R, seq_len)`` for each array."""
    return {k: v[:, :n_blocks * seq_len].reshape(v.shape[0], n_blocks, seq_len).transpose(1, 0, 2)
            for k, v in arrays.items()}


def _batch(blocks: dict[str, np.ndarray]) -> Batch:
    """Tensors; one-row blocks lose the row axis (what a plain HF causal LM reads)."""
    one_row = blocks["input_ids"].shape[1] == 1
    t = {k: torch.from_numpy(np.ascontiguousarray(v[:, 0] if one_row else v)) for k, v in blocks.items()}
    return Batch(t["input_ids"], t["labels"], t.get("loss_weights"))


class PackedExamples:
    """Training blocks of ``seq_len`` steps over shuffled examples; ``blocks(cursor, n)``."""

    def __init__(self, examples: Sequence[Example], seq_len: int, seed: int,
                 source: str = "train data") -> None:
        self.examples = list(examples)
        self.seq_len = seq_len
        self.seed = seed
        total = sum(e.input_ids.shape[1] for e in self.examples)
        self.blocks_per_epoch = total // seq_len
        if self.blocks_per_epoch == 0:
            raise DataError(f"{source}: {len(self.examples)} utterances / {total} tokens, fewer "
                            f"than one block of seq_len={seq_len}; the dataset is empty or too small")
        self.tokens = self.blocks_per_epoch * seq_len
        self._epoch: int | None = None
        self._packed: dict[str, np.ndarray] = {}

    def _pack(self, epoch: int) -> dict[str, np.ndarray]:
        if self._epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
            self._packed = _blocks(_concat(self.examples, order), self.blocks_per_epoch,
                                   self.seq_len)                 # (N, R, T) each
            self._epoch = epoch
        return self._packed

    def blocks(self, cursor: int, n: int) -> Batch:
        """Blocks ``cursor .. cursor+n-1`` (crossing epochs as needed) as one batch."""
        rows: dict[str, list[np.ndarray]] = {}
        for c in range(cursor, cursor + n):
            epoch, idx = divmod(c, self.blocks_per_epoch)
            for key, value in self._pack(epoch).items():
                rows.setdefault(key, []).append(value[idx])
        return _batch({k: np.stack(v) for k, v in rows.items()})


def eval_blocks(examples: Sequence[Example], seq_len: int, pad_id: int,
                max_blocks: int | None = None, source: str = "validation split") -> Batch:
    """Evaluation blocks in file order; the padded tail has label -100 (and weight 0)."""
    if not examples:
        raise DataError(f"{source} is empty")
    flat = _concat(examples)
    length = flat["input_ids"].shape[1]
    n = -(-length // seq_len)
    if max_blocks is not None:
        n = min(n, max_blocks)
    fill = {"input_ids": pad_id, "labels": IGNORE, "loss_weights": 0.0}
    padded = {}
    for key, value in flat.items():
        out = np.full((value.shape[0], n * seq_len), fill[key], dtype=value.dtype)
        keep = min(length, n * seq_len)
        out[:, :keep] = value[:, :keep]
        padded[key] = out
    return _batch(_blocks(padded, n, seq_len))
