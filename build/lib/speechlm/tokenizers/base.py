"""The speech tokenizer interface every later stage relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SpeechTokenizer(Protocol):
    """16 kHz float32 samples -> discrete units (+ run-length durations in frames)."""

    path: Path
    vocab_size: int    # K, units are 0..K-1
    frame_rate: float  # frames per second before deduplication

    def encode(self, samples: np.ndarray, dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(units, durations), both int64; with ``dedup=False`` every duration is 1."""
        ...
