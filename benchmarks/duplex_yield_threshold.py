"""Choose the duplex engine's yield threshold on the valid split (training voices), not the test.

A speaking duplex model stops once P(the user holds the floor) reaches ``yield_threshold``
(:meth:`speechlm.generation.duplex.DuplexEngine._decide`; 1.0 = only when that is the most
probable decision, the baseline of this sweep). Each threshold is one
``speechlm eval --suite duplex --split valid`` run of the same model, the same dialogues and the
same per-dialogue seeds; an eval dir that already holds ``results.json`` is reused. Writes
``benchmarks/results/duplex_yield_threshold.json``: per threshold the stop latency (p50 / p95 /
share within 200 ms) and what a threshold could cost (queries answered, false responses,
takeovers in pauses, turn-taking latency).

    python benchmarks/duplex_yield_threshold.py --model work/runs/duplex-tiny-s0 \\
        --vocoder work/vocoder --dialogues work/dialogues --out work/calib
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (1.0, 0.3, 0.2, 0.1, 0.05)
KEYS = ("interruption_stop_latency_p50_ms", "interruption_stop_latency_p95_ms", "interruptions",
        "interruption_stopped_200ms", "silence_query_accuracy", "false_response_rate",
        "takeover_rate_pause", "turn_taking_latency_ms", "backchannel_rate")


def evaluate(threshold: float, args: argparse.Namespace, reused: list[float]) -> dict:
    out = Path(args.out) / f"t{threshold}"
    if (out / "results.json").is_file():
        reused.append(threshold)
    else:
        subprocess.run([sys.executable, "-W", "ignore", "-m", "speechlm", "eval", "--suite",
                        "duplex", "--split", "valid", "--model", args.model, "--vocoder",
                        args.vocoder, "--dialogues", args.dialogues, "--max-dialogues",
                        str(args.max_dialogues), "--yield-threshold", str(threshold),
                        "--out", str(out)],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = json.loads((out / "results.json").read_text())["duplex"]
    return {key: result[key] for key in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a duplex model with a state stream")
    parser.add_argument("--vocoder", required=True)
    parser.add_argument("--dialogues", required=True, help="dialogue corpus with a valid split")
    parser.add_argument("--out", required=True, help="eval dirs, one per threshold")
    parser.add_argument("--max-dialogues", type=int, default=22)
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS),
                        help=f"thresholds to score (default {' '.join(map(str, THRESHOLDS))})")
    args = parser.parse_args()
    start = time.time()
    reused: list[float] = []
    sweep = {str(t): evaluate(t, args, reused) for t in args.thresholds}
    record = {"name": "duplex_yield_threshold",
              "config": {"model": args.model, "split": "valid", "dialogues": args.max_dialogues,
                         "thresholds": args.thresholds, "frame_ms": 20,
                         "reused_eval_dirs": reused},   # "seconds" excludes their runs
              "baseline": "threshold 1.0 (stop only when yielding is the most probable decision)",
              "results": sweep, "machine": machine(), "seconds": round(time.time() - start, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "duplex_yield_threshold.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(sweep, indent=2))


if __name__ == "__main__":
    main()
