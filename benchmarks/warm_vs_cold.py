"""Warm (TWIST) vs cold (GSLM) speech LM: validation-loss curves, best valid and test loss, for
every seed and both precisions, in one invocation.

Builds the shared inputs once from the recipes' keys (corpus, tokenizer, units, text LM; see
``recipe_matrix.prepare``), then trains ``configs/recipes/gslm-tiny.yaml`` and
``twist-tiny.yaml`` unchanged except for paths, seed and ``precision``, one after the other in
this process: seeds x precisions x recipes. The JSON holds every run (curve, best valid loss and
its step, test loss of the final model, tokens/s, seconds), per precision the paired warm - cold
differences over seeds (mean and 95 % t interval) and the bf16 / fp32 speed ratio; the plot shows
the valid-loss curves (fp32; one line per seed).

    python benchmarks/warm_vs_cold.py --seeds 3 --precisions fp32,bf16 \\
        --out benchmarks/results/warm_vs_cold.json --plot docs/lm_warm_vs_cold.png

bf16 on a CPU without AVX512-BF16 is emulated: it runs, slower than fp32, and the JSON records
that (``bf16_native``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

RECIPES = {"cold (GSLM)": "gslm-tiny", "warm (TWIST)": "twist-tiny"}


def plot(curves: dict[str, dict[int, list]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=100)
    for k, (label, seeds) in enumerate(curves.items()):
        for n, (seed, curve) in enumerate(sorted(seeds.items())):
            ax.plot(*zip(*curve), color=f"C{k}", marker="o", markersize=2, alpha=0.9 - 0.2 * n,
                    label=label if n == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="work/wvc", help="shared inputs and runs/")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", default="benchmarks/results/warm_vs_cold.json")
    parser.add_argument("--plot", default="docs/lm_warm_vs_cold.png")
    for flag in ("corpus", "tokenizer", "units", "text-lm"):
        parser.add_argument(f"--{flag}", default=None, help=f"existing {flag} to reuse")
    parser.add_argument("overrides", nargs="*", help="key=value for both recipes")
    args = parser.parse_args()

    import torch
    from common import machine
    from recipe_matrix import MatrixConfig, interval, prepare, train_run

    from speechlm.lm.plots import read_metrics

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    base = MatrixConfig(recipes=tuple(RECIPES.values()), seeds=tuple(range(args.seeds)),
                        work=Path(args.work), overrides=tuple(args.overrides),
                        **{k: Path(v) if v else None for k, v in
                           (("corpus", args.corpus), ("tokenizer", args.tokenizer),
                            ("units", args.units), ("text_lm", args.text_lm))})
    start = time.perf_counter()
    data = prepare(base)
    runs: dict[str, dict[str, dict[int, dict]]] = {}
    curves: dict[str, dict[int, list]] = {}
    for precision in precisions:
        cfg = replace(base, work=base.work / precision,
                      overrides=(*base.overrides, f"precision={precision}"),
                      **{k: Path(data[k]) for k in ("corpus", "tokenizer", "units", "text_lm")})
        runs[precision] = {}
        for seed in cfg.seeds:
            for label, recipe in RECIPES.items():
                result = train_run(cfg, recipe, seed)
                rows = read_metrics(result["run_dir"])
                result["curve"] = [[r["step"], round(r["valid_loss"], 4)] for r in rows
                                   if "valid_loss" in r]
                runs[precision].setdefault(label, {})[seed] = result
                if precision == precisions[0]:
                    curves.setdefault(label, {})[seed] = result["curve"]
                print(f"{precision} seed {seed} {label}: best {result['best_valid_loss']:.4f} @ "
                      f"{result['best_step']}, test {result['test_loss']:.4f}, "
                      f"{result['train_s']:.0f} s", flush=True)
    summary = {}
    for precision, by_label in runs.items():
        cold, warm = by_label["cold (GSLM)"], by_label["warm (TWIST)"]
        summary[precision] = {
            "cold_best_valid": interval([r["best_valid_loss"] for r in cold.values()]),
            "warm_best_valid": interval([r["best_valid_loss"] for r in warm.values()]),
            "warm_minus_cold_best_valid": interval(
                [warm[s]["best_valid_loss"] - cold[s]["best_valid_loss"] for s in cold]),
            "warm_minus_cold_test": interval(
                [warm[s]["test_loss"] - cold[s]["test_loss"] for s in cold]),
            "warm_minus_cold_first_eval": interval(
                [warm[s]["curve"][0][1] - cold[s]["curve"][0][1] for s in cold]),
            "warm_ahead_at_every_eval": all(
                w[1] < c[1] for s in cold for w, c in zip(warm[s]["curve"], cold[s]["curve"])),
            "tok_s": statistics.median(r["tok_s"] for lab in by_label.values()
                                       for r in lab.values()),
        }
    if "fp32" in summary and "bf16" in summary:
        summary["bf16_over_fp32_tok_s"] = summary["bf16"]["tok_s"] / summary["fp32"]["tok_s"]
    plot(curves, Path(args.plot), f"warm vs cold, {precisions[0]}, seeds {list(base.seeds)}")
    first = summary[precisions[0]]
    result = {
        "name": "warm_vs_cold_valid_loss",
        "config": {"recipes": [f"configs/recipes/{r}.yaml" for r in RECIPES.values()],
                   "seeds": list(base.seeds), "precisions": precisions,
                   "overrides": args.overrides, "data": data,
                   "bf16_native": bool(torch.cpu._is_avx512_bf16_supported()),
                   "command": "python benchmarks/warm_vs_cold.py " + " ".join(sys.argv[1:])},
        "value": first["warm_best_valid"]["mean"], "baseline": first["cold_best_valid"]["mean"],
        "ratio": first["warm_best_valid"]["mean"] / first["cold_best_valid"]["mean"],
        "unit": f"best valid loss (nats/token), mean over seeds, {precisions[0]}",
        "summary": summary,
        "runs": {p: {label: {str(s): r for s, r in seeds.items()} for label, seeds in v.items()}
                 for p, v in runs.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": machine(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
