"""Shared fixtures: tiny generated audio and corpora (no network, no shipped audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def tone(seconds: float, rate: int = 16_000, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    """A sine tone with a little noise, shaped (T,) or (T, C)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(0).normal(size=t.size)
    wave = wave.astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def tiny_lm_config(vocab, layers: int = 2):
    """A 32-wide Llama config over ``vocab``: the smallest model the LM tests train or sample."""
    from speechlm.lm.model import model_config

    return model_config("tiny", vocab, hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """About 40 s of espeak speech, 3 training voices + 1 held-out voice, with alignments."""
    from speechlm.data.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    synthesize_corpus(out, hours=40 / 3600, voices=3, heldout_voices=1, seed=3,
                      show_progress=False)
    return out
