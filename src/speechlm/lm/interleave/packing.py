"""Training blocks whose examples are redrawn every epoch (interleaving spans, concat orders,
mixture choices), with the exact resume of :class:`~speechlm.lm.packing.PackedExamples`.

Epoch ``e`` draws example ``i`` with generator ``(seed, e, i)``, shuffles with ``(seed, e)`` and
cuts blocks, so a block cursor still fixes the data position. Drawn sequences differ in length
from epoch to epoch (text is shorter than speech), so every epoch has the block count of epoch 0:
a longer epoch drops its tail, a shorter one continues from its own start.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from speechlm.lm.packing import PackedExamples, _blocks, _concat
from speechlm.lm.sequences import Example


class EpochExamples(PackedExamples):
    """``PackedExamples`` over ``draw(epoch) -> examples``."""

    def __init__(self, draw: Callable[[int], list[Example]], seq_len: int, seed: int,
                 source: str = "train data") -> None:
        self.draw = draw
        super().__init__(draw(0), seq_len, seed, source)

    def _pack(self, epoch: int) -> dict[str, np.ndarray]:
        if self._epoch != epoch:
            examples = self.examples if epoch == 0 else self.draw(epoch)
            order = np.random.default_rng([self.seed, epoch]).permutation(len(examples))
            flat = _concat(examples, order)                               # (1, total)
            reps = -(-self.tokens // flat["input_ids"].shape[1])
            flat = {k: np.tile(v, (1, reps)) for k, v in flat.items()}
            self._packed = _blocks(flat, self.blocks_per_epoch, self.seq_len)
            self._epoch = epoch
        return self._packed
