"""Fake token datasets (the tokenize_corpus format) and tiny-model overrides for LM tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
GSLM = REPO / "configs" / "recipes" / "gslm-tiny.yaml"
TWIST = REPO / "configs" / "recipes" / "twist-tiny.yaml"

# 2-layer width-32 model, short blocks, no TensorBoard/plots/progress: fast and quiet.
TINY = ["hidden_size=32", "num_layers=2", "num_heads=2", "intermediate_size=64", "seq_len=32",
        "batch_size=4", "warmup_steps=2", "eval_every=3", "eval_blocks=4", "tensorboard=false",
        "progress=false", "plot=false", "threads=1"]


def make_token_dataset(out: Path, vocab_size: int = 20, utterances: dict | None = None,
                       seed: int = 0) -> Path:
    """Write ``meta.json`` + ``data/<split>.parquet`` with Markov-chain units (learnable)."""
    utterances = utterances or {"train": 60, "valid": 8, "heldout": 4}
    rng = np.random.default_rng(seed)
    nxt = rng.integers(0, vocab_size, size=(vocab_size, 2))  # each unit has 2 likely successors
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, n in utterances.items():
        rows = {"id": [], "speaker": [], "split": [], "units": [], "durations": [], "text": [],
                "words": []}
        for i in range(n):
            u = [int(rng.integers(vocab_size))]
            for _ in range(int(rng.integers(5, 30))):
                u.append(int(nxt[u[-1], rng.integers(2)]))
            rows["id"].append(f"{split}-{i}")
            rows["speaker"].append(f"spk{i % 3}")
            rows["split"].append(split)
            rows["units"].append(u)
            rows["durations"].append([2] * len(u))
            rows["text"].append("hello world")
            rows["words"].append([{"label": "hello", "start": 0, "end": 2}])
        schema = pa.schema([("id", pa.string()), ("speaker", pa.string()), ("split", pa.string()),
                            ("units", pa.list_(pa.int32())), ("durations", pa.list_(pa.int32())),
                            ("text", pa.string()),
                            ("words", pa.list_(pa.struct([("label", pa.string()),
                                                          ("start", pa.int32()),
                                                          ("end", pa.int32())])))])
        pq.write_table(pa.table(rows, schema=schema), out / "data" / f"{split}.parquet")
    (out / "meta.json").write_text(json.dumps({"tokenizer": str(out / "tok"), "vocab_size": vocab_size,
                                               "frame_rate": 50, "dedup": True}))
    return out


@pytest.fixture
def units_dir(tmp_path) -> Path:
    return make_token_dataset(tmp_path / "units")


def overrides(units: Path, out: Path, *extra: str) -> list[str]:
    return [f"units_dir={units}", f"output_dir={out}", *TINY, *extra]
