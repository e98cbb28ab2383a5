"""Shared benchmark plumbing: machine description and the JSON result format of STYLE.md."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_result(name: str, config: dict, value: float, baseline: float | None, unit: str,
                 **extra) -> Path:
    """Write ``results/<name>.json``; ``ratio`` is value / baseline (both measured in one run)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "config": config, "value": value, "baseline": baseline,
              "ratio": value / baseline if baseline else None, "unit": unit,
              "machine": machine(), **extra}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
