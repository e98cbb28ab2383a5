"""The speech tokenizer interface every later stage relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from speechlm.core.errors import CheckpointError


@runtime_checkable
class SpeechTokenizer(Protocol):
    """16 kHz float32 samples -> discrete units (+ run-length durations in frames)."""

    path: Path
    vocab_size: int    # K, units are 0..K-1
    frame_rate: float  # frames per second before deduplication

    def encode(self, samples: np.ndarray, dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(units, durations), both int64; with ``dedup=False`` every duration is 1."""
        ...


def load_hf_model(path: Path, model_types: tuple[str, ...]) -> tuple[Any, Any]:
    """``(config, model)`` of a local HuggingFace model directory, fp32 in eval mode, weights from
    safetensors only. ``CheckpointError`` naming the directory when it has no config, the config or
    weights cannot be read, or its ``model_type`` is not one of ``model_types``."""
    from transformers import AutoConfig, AutoModel

    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a HuggingFace model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: cannot read HF config ({short_error(err)})") from None
    if config.model_type not in model_types:
        raise CheckpointError(f"{path}: model_type {config.model_type!r} is not one of {model_types}")
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: cannot load HF model ({short_error(err)})") from None
    return config, model.float().eval()


def short_error(err: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
