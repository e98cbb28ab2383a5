"""GPU paths of the LM core, checked on one CUDA device in one run: a recipe in bf16, exact
resume, ``accelerate launch`` (DDP and FSDP, one process each) and the K = 4 multi-stream
model. The CPU sessions that wrote the core had no GPU; this script is what they ran when one
was lent, and ``benchmarks/results/gpu_paths.json`` is its record.

Each check trains the tiny recipes (``configs/recipes/gslm-tiny.yaml`` and
``multistream-toy.yaml``) on a fake Markov-chain token dataset (the tests' generator), so no
corpus, espeak or tokenizer is needed on the GPU machine. A check passes when its command exits
0 and writes a loadable model; losses, tokens/s and the bf16/fp32 loss gap are recorded.

    python benchmarks/gpu_paths.py --steps 200 [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "lm"))
from common import machine, RESULTS  # noqa: E402

QUIET = ["tensorboard=false", "progress=false", "plot=false"]


def run(cmd: list[str], timeout: float) -> dict:
    """Run one command; exit status, seconds and the last lines of its output."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])})
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc, out = 124, f"timeout after {timeout} s: {(err.stdout or b'')[-2000:]!r}"
    return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - start, 1),
            "tail": out[-1500:]}


def summary(run_dir: Path) -> dict:
    """Final train/valid loss and mean tokens/s from a run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    valid = [r for r in rows if "valid_loss" in r]
    rates = [r["tok_s"] for r in train[len(train) // 4:] if "tok_s" in r]
    return {"steps": len(train), "train_loss": train[-1]["loss"] if train else None,
            "valid_loss": valid[-1]["valid_loss"] if valid else None,
            "tok_per_s": sum(rates) / len(rates) if rates else None,
            "losses": [r["loss"] for r in train]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=150, help="seconds per check")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_paths.json")
    parser.add_argument("overrides", nargs="*", help="key=value applied to every recipe")
    args = parser.parse_args()
    from conftest import make_token_dataset  # the tests' fake dataset (one generator)

    work = Path(tempfile.mkdtemp(prefix="gpu_paths_"))
    units = make_token_dataset(work / "units", vocab_size=100,
                               utterances={"train": 2000, "valid": 64, "test": 64})
    py = sys.executable
    train = [py, "-m", "speechlm", "train"]
    launch = [py, "-m", "accelerate.commands.launch", "--num_processes", "1"]
    recipes = ROOT / "configs" / "recipes"

    def recipe(name: str, out: str, *extra: str) -> list[str]:
        return ["--config", str(recipes / f"{name}.yaml"), f"units_dir={units}",
                f"tokenizer_dir={units / 'tok'}", f"output_dir={work / out}",
                f"max_steps={args.steps}", f"save_every={args.steps // 2}", *QUIET, *args.overrides,
                *extra]

    checks = {
        "gslm_bf16": train + recipe("gslm-tiny", "bf16", "precision=bf16"),
        "gslm_fp32": train + recipe("gslm-tiny", "fp32", "precision=fp32"),
        "gslm_bf16_resume": train + recipe("gslm-tiny", "bf16", "precision=bf16",
                                            f"max_steps={args.steps + 50}") + ["--resume"],
        "multistream_k3_bf16": train + recipe("multistream-toy", "k3", "precision=bf16",
                                                      f"tokens_dir={work / 'tokens3'}"),
        "accelerate_ddp_bf16": launch + ["--mixed_precision", "bf16", "-m", "speechlm", "train"]
        + recipe("gslm-tiny", "ddp", "precision=bf16"),
        "accelerate_fsdp_bf16": launch + ["--use_fsdp", "--mixed_precision", "bf16", "-m",
                                          "speechlm", "train"]
        + recipe("gslm-tiny", "fsdp", "precision=bf16"),
    }
    dirs = {"gslm_bf16": "bf16", "gslm_fp32": "fp32", "gslm_bf16_resume": "bf16",
            "multistream_k3_bf16": "k3", "accelerate_ddp_bf16": "ddp",
            "accelerate_fsdp_bf16": "fsdp"}
    results = {}
    for name, cmd in checks.items():
        res = run(cmd, args.timeout)
        res.update(summary(work / dirs[name]))
        res["model_files"] = sorted(p.name for p in (work / dirs[name]).glob("*.safetensors"))
        results[name] = res
        print(name, res["rc"], res["seconds"], "s", res.get("valid_loss"), res.get("tok_per_s"),
              flush=True)
    bf16, fp32 = results["gslm_bf16"], results["gslm_fp32"]
    record = {"name": "gpu_paths", "machine": machine(), "steps": args.steps,
              "checks": {k: {kk: vv for kk, vv in v.items() if kk != "losses"}
                         for k, v in results.items()},
              "bf16_vs_fp32": {
                  "tok_per_s_ratio": (bf16["tok_per_s"] / fp32["tok_per_s"])
                  if bf16.get("tok_per_s") and fp32.get("tok_per_s") else None,
                  "valid_loss_gap": (bf16["valid_loss"] - fp32["valid_loss"])
                  if bf16.get("valid_loss") is not None and fp32.get("valid_loss") is not None
                  else None}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["bf16_vs_fp32"]))
    return 0 if all(r["rc"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
