"""Fake token datasets (written by the one token-dataset writer) and tiny-model overrides."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from speechlm.tokenizers.tokens import StreamSpec, TokenRecord, derive_streams, write_token_dataset

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "configs" / "recipes"
GSLM = RECIPES / "gslm-tiny.yaml"
TWIST = RECIPES / "twist-tiny.yaml"
MULTISTREAM = RECIPES / "multistream-toy.yaml"

# 2-layer width-32 model, short blocks, no TensorBoard/plots/progress: fast and quiet.
TINY = ["hidden_size=32", "num_layers=2", "num_heads=2", "intermediate_size=64", "seq_len=32",
        "batch_size=4", "warmup_steps=2", "eval_every=3", "eval_blocks=4", "tensorboard=false",
        "progress=false", "plot=false", "threads=1"]


def make_token_dataset(out: Path, vocab_size: int = 20, utterances: dict | None = None,
                       seed: int = 0) -> Path:
    """A K = 1 dataset of Markov-chain units (learnable), durations 1-6 frames, one word per
    three units; ``meta.json`` records ``out/tok`` as its tokenizer."""
    utterances = utterances or {"train": 60, "valid": 8, "heldout": 4}
    rng = np.random.default_rng(seed)
    nxt = rng.integers(0, vocab_size, size=(vocab_size, 2))  # each unit has 2 likely successors
    splits = {}
    for split, n in utterances.items():
        records = []
        for i in range(n):
            u = [int(rng.integers(vocab_size))]
            for _ in range(int(rng.integers(5, 30))):
                u.append(int(nxt[u[-1], rng.integers(2)]))
            durations = np.random.default_rng([seed, i, len(u)]).integers(1, 7, size=len(u))
            starts = np.concatenate([[0], np.cumsum(durations)[:-1]])
            words = [(f"w{j}", int(starts[j]), int(starts[j] + durations[j])) for j in range(0, len(u), 3)]
            records.append(TokenRecord(f"{split}-{i}", f"spk{i % 3}", split, np.asarray(u),
                                       durations, "hello world", words))
        splits[split] = records
    spec = StreamSpec("units", "units", vocab_size, 50.0, str(out / "tok"))
    return write_token_dataset(out, splits, [spec])


def write_text(path: Path, seed: int = 0) -> Path:
    """200 short sentences over a 10-word vocabulary: a text a tiny text LM learns in a few steps."""
    rng = random.Random(seed)
    words = ["cat", "dog", "sat", "ran", "mat", "park", "the", "big", "red", "old"]
    path.write_text(" ".join(" ".join(rng.choices(words, k=6)).capitalize() + "." for _ in range(200)))
    return path


@pytest.fixture
def units_dir(tmp_path) -> Path:
    return make_token_dataset(tmp_path / "units")


@pytest.fixture
def streams_dir(units_dir, tmp_path) -> Path:
    """K = 3: units + duration bucket + word start, derived from ``units_dir``."""
    return derive_streams(units_dir, tmp_path / "tokens3", ["duration", "word_start"])


def overrides(units: Path, out: Path, *extra: str) -> list[str]:
    return [f"units_dir={units}", f"tokenizer_dir={units / 'tok'}", f"output_dir={out}", *TINY, *extra]
