"""`make demo` in a fresh clone: wall time against the 15-minute budget, the machine's load while
it ran, and the demo report's figures, in one JSON.

Clones the repository's committed HEAD into ``--clone`` (removed first), runs ``make demo`` there
(which creates its own ``.venv``; the install step needs the package registry), samples the
1-minute load average every 15 s, and copies the figures the README quotes from
``demo-report/report.json``: every model's benchmark entries, the untrained row against chance,
each speech LM against the untrained row, stage timings and the artifact directories.

    python benchmarks/demo_run.py --clone /tmp/democlone --out benchmarks/results/demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
BUDGET_S = 15 * 60


class LoadSampler(threading.Thread):
    """The 1-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append(round(os.getloadavg()[0], 2))
            self.done.wait(self.every)

    def summary(self) -> dict:
        s = self.samples or [0.0]
        return {"mean": round(sum(s) / len(s), 2), "max": max(s), "min": min(s), "samples": s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clone", default="/tmp/democlone", help="fresh clone directory")
    parser.add_argument("--out", default="benchmarks/results/demo.json")
    parser.add_argument("--log", default=None, help="make's output (default CLONE.log)")
    args = parser.parse_args()
    from common import machine

    clone = Path(args.clone)
    if clone.exists():
        shutil.rmtree(clone)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    log_path = Path(args.log or f"{clone}.log")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    sampler = LoadSampler()
    sampler.start()
    start = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run(["make", "demo"], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                              env=env).returncode
    wall = time.perf_counter() - start
    sampler.done.set()
    if code != 0:
        print(f"make demo failed with status {code}; see {log_path}", file=sys.stderr)
        return 1
    report = json.loads((clone / "demo-report" / "report.json").read_text())
    models = {name: m["results"] for name, m in report["models"].items() if m.get("results")}
    untrained = models.get("untrained", {})
    result = {
        "name": "demo",
        "config": {"commit": commit, "command": "make demo (fresh clone, creates .venv)",
                   "demo_config": report.get("config")},
        "value": round(wall, 1), "baseline": BUDGET_S, "ratio": round(wall / BUDGET_S, 3),
        "unit": "wall seconds of `make demo` in a fresh clone; baseline: the 15-min budget",
        "pipeline_s": report["wall_s"],  # `speechlm demo` itself; the rest is creating .venv
        "load_average_1min": sampler.summary(),
        "timings": report["timings"],
        "results": models,
        "untrained_contains_chance": {b: e["ci95"][0] <= 0.5 <= e["ci95"][1]
                                      for b, e in untrained.items()},
        "versus_untrained": report.get("versus_untrained"),
        "artifacts": report.get("artifacts"),
        "generation_metrics": {m: g.get("metrics") for m, g in
                               (report.get("generation") or {}).items()},
        "machine": machine(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("value", "pipeline_s", "load_average_1min",
                                             "untrained_contains_chance", "versus_untrained")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
