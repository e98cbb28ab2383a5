"""Warm (TWIST) vs cold (GSLM) speech LM on the demo corpus: validation-loss curves, best and final.

Builds what is missing with the demo's settings (``speechlm corpus synth --hours 0.5 --voices 12
--seed 0``, ssl-tiny tokenizer with 100 units, the 400-step text LM), then trains
``configs/recipes/gslm-tiny.yaml`` and ``twist-tiny.yaml`` unchanged except for the paths, one
after the other in this process, and writes the JSON and one plot with both valid-loss curves.

    .venv/bin/python benchmarks/warm_vs_cold.py --work work/wvc \\
        --out benchmarks/results/warm_vs_cold.json --plot docs/lm_warm_vs_cold.png
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="work/wvc", help="corpus/, tokenizer/, units/, text-lm/, runs/")
    parser.add_argument("--out", default="benchmarks/results/warm_vs_cold.json")
    parser.add_argument("--plot", default="docs/lm_warm_vs_cold.png")
    parser.add_argument("overrides", nargs="*", help="key=value for both recipes")
    args = parser.parse_args()

    from common import machine

    from speechlm.lm.plots import plot_compare, read_metrics
    from speechlm.lm.textlm import train_text_lm
    from speechlm.pipeline import train_from_config

    work = Path(args.work)
    timings: dict[str, float] = {}
    if not (work / "corpus" / "meta.json").is_file():
        from speechlm.data.synth import synthesize_corpus

        t = time.perf_counter()
        synthesize_corpus(work / "corpus", hours=0.5, voices=12, seed=0, show_progress=False)
        timings["corpus_s"] = time.perf_counter() - t
    if not (work / "units" / "meta.json").is_file():
        from speechlm.tokenizers import tokenize_corpus, train_tokenizer

        t = time.perf_counter()
        train_tokenizer(work / "corpus", work / "tokenizer", features="ssl-tiny", units=100, seed=0,
                        show_progress=False)
        tokenize_corpus(work / "tokenizer", work / "corpus", work / "units", show_progress=False)
        timings["tokenizer_s"] = time.perf_counter() - t
    if not (work / "text-lm" / "speechlm.json").is_file():
        t = time.perf_counter()
        train_text_lm(work / "text-lm", steps=400, seed=0, progress=False)
        timings["text_lm_s"] = time.perf_counter() - t
    paths = [f"corpus_dir={work / 'corpus'}", f"tokenizer_dir={work / 'tokenizer'}",
             f"units_dir={work / 'units'}", f"text_lm_dir={work / 'text-lm'}", "progress=false"]
    runs, result_runs = {}, {}
    for label, recipe in (("cold (GSLM)", "gslm-tiny"), ("warm (TWIST)", "twist-tiny")):
        t = time.perf_counter()
        run = train_from_config(REPO / "configs" / "recipes" / f"{recipe}.yaml",
                                [*paths, f"output_dir={work / 'runs' / recipe}", *args.overrides])
        seconds = time.perf_counter() - t
        rows = read_metrics(run)
        best = json.loads((run / "best.json").read_text())
        runs[label] = run
        result_runs[label] = {
            "recipe": recipe, "train_s": round(seconds, 1), "steps": rows[-1]["step"],
            "best_valid_loss": round(best["best_valid_loss"], 4), "best_step": best["best_step"],
            "final_step_valid_loss": round(best["last_valid_loss"], 4),
            "final_model": best["final_model"],
            "curve": [[r["step"], round(r["valid_loss"], 4)] for r in rows if "valid_loss" in r]}
        print(f"{label}: best {best['best_valid_loss']:.4f} @ {best['best_step']}, last "
              f"{best['last_valid_loss']:.4f}, {seconds:.0f} s", flush=True)
    plot_compare(runs, args.plot)
    text_rows = [r for r in read_metrics(work / "text-lm") if "valid_loss" in r]
    warm, cold = result_runs["warm (TWIST)"], result_runs["cold (GSLM)"]
    units = json.loads((work / "units" / "meta.json").read_text())
    result = {
        "name": "warm_vs_cold_valid_loss",
        "config": {"corpus": "speechlm corpus synth --hours 0.5 --voices 12 --seed 0",
                   "tokenizer": "ssl-tiny, 100 units", "utterances": units.get("utterances"),
                   "recipes": ["configs/recipes/gslm-tiny.yaml", "configs/recipes/twist-tiny.yaml"],
                   "overrides": args.overrides,
                   "text_lm_final_valid_loss": text_rows[-1]["valid_loss"] if text_rows else None},
        "value": warm["best_valid_loss"], "baseline": cold["best_valid_loss"],
        "ratio": warm["best_valid_loss"] / cold["best_valid_loss"], "unit": "best valid loss (nats/token)",
        "runs": result_runs, "prep_timings_s": timings,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": machine(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
