"""The speech tokenizer interface every later stage relies on, and atomic directory writes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temp directory next to ``out_dir``; on success it replaces ``out_dir`` at once."""
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
