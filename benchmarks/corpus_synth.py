"""Synthesis speed of `speechlm corpus synth` as a real-time factor (audio seconds per wall second).

Runs the issue's configuration (0.25 h, 12 voices, seed 1) with 2 worker processes and, as the
baseline in the same process, with 1 worker. Writes benchmarks/results/corpus_synth.json.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from speechlm.data.synth import synthesize_corpus  # noqa: E402


def speed(workers: int, hours: float, voices: int, seed: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        corpus = synthesize_corpus(Path(tmp) / "c", hours=hours, voices=voices, seed=seed,
                                   workers=workers, show_progress=False)
        elapsed = time.perf_counter() - start
        stats = corpus.stats()
    return stats["hours"] * 3600 / elapsed, stats


def main() -> None:
    config = {"hours": 0.25, "voices": 12, "seed": 1}
    single, _ = speed(1, **config)
    parallel, stats = speed(2, **config)
    path = write_result("corpus_synth", {**config, "workers": 2}, parallel, single,
                        "x real time (audio s / wall s); baseline = 1 worker",
                        speakers=stats["speakers"], hours=stats["hours"])
    print(f"synthesis: {parallel:.0f}x real time with 2 workers, {single:.0f}x with 1 "
          f"(ratio {parallel / single:.2f}); wrote {path}")


if __name__ == "__main__":
    main()
