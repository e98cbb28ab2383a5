"""Loss-curve plots from ``metrics.jsonl`` (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Train and validation loss vs step for one run -> ``run_dir/loss.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    out = Path(out) if out else Path(run_dir) / "loss.png"
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train", lw=1)
    valid = [r for r in rows if "valid_loss" in r]
    if valid:
        ax.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], "o-", label="valid")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=Path(run_dir).name)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_compare(runs: dict[str, str | Path], out: str | Path, key: str = "valid_loss") -> Path:
    """One plot of ``key`` vs step for several runs, e.g. ``{"cold (GSLM)": a, "warm (TWIST)": b}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run_dir in runs.items():
        rows = [r for r in read_metrics(run_dir) if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], "o-", label=label, ms=3)
    ax.set(xlabel="step", ylabel=f"{key} (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
