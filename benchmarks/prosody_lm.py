"""pGSLM and SpiRit-LM-expressive tiny recipes vs the unit-only GSLM, same data and compute, seeds.

One invocation trains ``gslm-tiny`` (baseline), ``pgslm-tiny`` and ``spiritlm-expressive-tiny``
for every seed with the same step budget on the same styled corpus and unit tokenizer, evaluates
each with ``speechlm eval --suite prosody`` (held-out voices; unit-only model: F0 of the
continuation vocoded by the units-only vocoder; prosody models: F0 from their predicted F0 /
pitch stream, audio by the F0-aware vocoder) and writes ``results/prosody_lm.json``.

Inputs in ``--work`` (W), built once with the CLI (what the committed figures used)::

    speechlm corpus synth --out W/corpus --hours 1.0 --voices 12 --heldout-voices 4 --seed 0 \
        --styles neutral,excited,sad,question,whisper
    speechlm tokenizer train --corpus W/corpus --out W/tok --features mfcc --units 100
    speechlm tokenize --tokenizer W/tok --corpus W/corpus --out W/units
    speechlm prosody train unit --corpus W/corpus --out W/pros-unit --units-tokenizer W/tok
    speechlm prosody train style --corpus W/corpus --out W/pros-style
    speechlm prosody train pitch-vq --corpus W/corpus --out W/pros-pitch steps=300
    speechlm prosody style-classifier --corpus W/corpus --out W/style-clf --clip-seconds 2
    V="--config configs/vocoder/demo.yaml --corpus W/corpus --tokenizer W/tok --units W/units"
    speechlm vocoder train $V --out W/voc-units source=true threads=1  # units-only, predicted F0
    speechlm prosody vocoder $V --out W/voc-f0 threads=1                # F0-aware

The K = 3 token datasets (W/tokens-pgslm, W/tokens-spiritlm) are built by the pipeline from
``prosody_tokenizers``. Training and evaluation are cached per run (W/runs/NAME-sSEED), so seeds
can run in parallel processes (``--train-only``, ``--no-report``) before the one invocation that
writes the JSON. When ``benchmarks/recipe_matrix.py`` lands on main, the same runs are rows of its
matrix: pass these three recipe files and the ``prosody`` suite to it instead.

    python benchmarks/prosody_lm.py --work W --seeds 0 1 2       # the committed figures
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import write_result

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"gslm": "gslm-tiny", "pgslm": "pgslm-tiny", "spiritlm": "spiritlm-expressive-tiny"}
METRICS = ("logf0_min_mae", "f0_std", "f0_prompt_corr", "style_preservation")


def train(recipe: str, work: Path, seed: int, steps: int) -> Path:
    from speechlm.pipeline import train_from_config

    out = work / "runs" / f"{recipe}-s{seed}"
    if (out / "speechlm.json").is_file():
        return out
    common = [f"corpus_dir={work / 'corpus'}", f"tokenizer_dir={work / 'tok'}",
              f"units_dir={work / 'units'}", f"output_dir={out}", f"seed={seed}",
              f"max_steps={steps}", "seq_len=256", "batch_size=8", "progress=false", "tensorboard=false", "plot=false", "threads=1"]
    if recipe == "pgslm":
        common += [f"tokens_dir={work / 'tokens-pgslm'}",
                   f"prosody_tokenizers=[unit={work / 'pros-unit'}]"]
    if recipe == "spiritlm":
        common += [f"tokens_dir={work / 'tokens-spiritlm'}",
                   f"prosody_tokenizers=[pitch-vq={work / 'pros-pitch'},style={work / 'pros-style'}]"]
    return train_from_config(REPO / "configs" / "recipes" / f"{RECIPES[recipe]}.yaml", common)


def evaluate(recipe: str, run: Path, work: Path, prompts: int, samples: int) -> dict:
    from speechlm.eval.prosody import ProsodyEvalConfig, evaluate_prosody

    # gslm: F0 of the continuation vocoded by the units-only vocoder; pgslm: F0 from its F0 stream
    # (no audio needed); spiritlm: F0 from its pitch stream, audio (for the style classifier) by
    # the F0-aware vocoder
    vocoder = {"gslm": work / "voc-units", "pgslm": None, "spiritlm": work / "voc-f0"}[recipe]
    cached = run / "eval-prosody" / "results.json"
    if cached.is_file():
        entry = json.loads(cached.read_text())["prosody"]
        if (entry["config"]["prompts"], entry["config"]["samples"], entry["vocoder"]) == \
                (prompts, samples, str(vocoder) if vocoder else None):
            return entry
    cfg = ProsodyEvalConfig(str(work / "corpus"), vocoder_dir=str(vocoder) if vocoder else None,
                            style_classifier=str(work / "style-clf"), prompts=prompts,
                            samples=samples, show_progress=False)
    entry = evaluate_prosody(run, cfg, run / "eval-prosody")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"prosody": entry}, indent=2))
    return entry


# The claims: (recipe, metric, sign) where sign * (recipe - gslm) > 0 means "recipe better".
# f0_std is judged by its distance to the real continuations' F0 spread (closer is better).
CLAIMS = (("pgslm", "logf0_min_mae", -1), ("pgslm", "f0_prompt_corr", 1), ("pgslm", "f0_std", -1),
          ("spiritlm", "style_preservation", 1))


def _claim_value(entry: dict, metric: str) -> float:
    if metric == "f0_std":
        return abs(entry["value"] - entry["reference"])
    return entry["value"]


def paired_contrasts(per_seed: dict[str, dict[str, dict]]) -> list[dict]:
    """Each claim as ``recipe - gslm`` per seed evaluated for both (paired), mean and 95 % t
    interval over seeds; ``holds`` when the whole interval lies on the better side of 0."""
    from recipe_matrix import interval

    out = []
    for recipe, metric, sign in CLAIMS:
        seeds = sorted(s for s in set(per_seed[recipe]) & set(per_seed["gslm"])
                       if per_seed[recipe][s][metric]["value"] is not None
                       and per_seed["gslm"][s][metric]["value"] is not None)
        if not seeds:
            continue
        diffs = [_claim_value(per_seed[recipe][s][metric], metric)
                 - _claim_value(per_seed["gslm"][s][metric], metric) for s in seeds]
        entry = interval(diffs)
        lo, hi = entry["ci95"]
        out.append({"recipe": RECIPES[recipe], "reference": RECIPES["gslm"],
                    "metric": "f0_std distance to real" if metric == "f0_std" else metric,
                    "better": "lower" if sign < 0 else "higher", "seeds": seeds, **entry,
                    "holds": bool(len(seeds) > 1 and (hi < 0 if sign < 0 else lo > 0))})
    return out


def bootstrap_contrasts(rows: dict[str, dict[str, list[dict]]], n: int = 2000,
                        seed: int = 0) -> list[dict]:
    """The claims again, as a hierarchical bootstrap: resample seeds, then prompts within each
    seed (the same prompts for the recipe and gslm-tiny: both saw them), and average the
    per-seed differences. Uses every prompt instead of three per-seed summaries, and keeps the
    seed-to-seed spread in the interval."""
    from speechlm.eval.prosody import prompt_metric

    rng = np.random.default_rng(seed)
    out = []
    for recipe, metric, sign in CLAIMS:
        if metric == "f0_std":
            continue
        seeds = sorted(set(rows[recipe]) & set(rows["gslm"]))
        if not seeds:
            continue
        pairs = {s: (rows[recipe][s], rows["gslm"][s]) for s in seeds}
        if any(len(a) != len(b) or [r["id"] for r in a] != [r["id"] for r in b]
               for a, b in pairs.values()):
            raise SystemExit(f"{recipe} and gslm were not evaluated on the same prompts")

        def diff(picks: list[tuple[str, np.ndarray]]) -> float | None:
            values = []
            for s, idx in picks:
                a, b = (prompt_metric([rows_[i] for i in idx], metric) for rows_ in pairs[s])
                if a is None or b is None:
                    return None
                values.append(a - b)
            return float(np.mean(values))

        point = diff([(s, np.arange(len(pairs[s][0]))) for s in seeds])
        draws = []
        for _ in range(n):
            picked = [seeds[i] for i in rng.integers(len(seeds), size=len(seeds))]
            value = diff([(s, rng.integers(len(pairs[s][0]), size=len(pairs[s][0])))
                          for s in picked])
            if value is not None:
                draws.append(value)
        lo, hi = (float(x) for x in np.percentile(draws, [2.5, 97.5]))
        out.append({"recipe": RECIPES[recipe], "reference": RECIPES["gslm"], "metric": metric,
                    "better": "lower" if sign < 0 else "higher", "seeds": seeds,
                    "prompts": len(pairs[seeds[0]][0]), "mean": point, "ci95": [lo, hi],
                    "draws": len(draws), "holds": bool(hi < 0 if sign < 0 else lo > 0)})
    return out


def markdown(summary: dict, contrasts: list[dict], config: dict,
             pooled: list[dict] = ()) -> str:
    """README-ready tables: each metric per recipe (mean over seeds, per-seed values), then the
    paired differences against the unit-only GSLM."""
    lines = [f"Prosody LMs, seeds {config['seeds']}, {config['steps']} steps each "
             f"({config['overrides']}); {config['prompts']} prompts x {config['samples']} "
             "samples per model.", "",
             "| recipe | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 1)]
    for recipe, row in summary.items():
        cells = [f"{row[m]['mean']:.3f} ({', '.join(f'{v:.3f}' for v in row[m]['per_seed'])})"
                 if row[m]["mean"] is not None else "–" for m in METRICS]
        lines.append(f"| {RECIPES[recipe]} | " + " | ".join(cells) + " |")
    lines += ["", "| recipe − gslm-tiny | metric (better) | mean difference [95 % t interval] "
              "| holds |", "|---|---|---|---|"]
    for c in contrasts:
        lo, hi = c["ci95"]
        lines.append(f"| {c['recipe']} | {c['metric']} ({c['better']}) | {c['mean']:+.3f} "
                     f"[{lo:+.3f}, {hi:+.3f}] | {'yes' if c['holds'] else 'no'} |")
    if pooled:
        lines += ["", "Hierarchical bootstrap (seeds, then the same prompts for both models):", "",
                  "| recipe − gslm-tiny | metric (better) | mean difference [95 % bootstrap] "
                  "| holds |", "|---|---|---|---|"]
        for c in pooled:
            lo, hi = c["ci95"]
            lines.append(f"| {c['recipe']} | {c['metric']} ({c['better']}) | {c['mean']:+.3f} "
                         f"[{lo:+.3f}, {hi:+.3f}] | {'yes' if c['holds'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("work/prosody-lm"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--name", default="prosody_lm")
    parser.add_argument("--train-only", action="store_true",
                        help="only train (runs are cached in WORK/runs; a later invocation "
                        "reuses them, so seeds can train in parallel processes)")
    parser.add_argument("--no-report", action="store_true",
                        help="train and evaluate (cached in WORK/runs/*/eval-prosody) without "
                        "writing the JSON: run one process per seed, then once with all seeds")
    parser.add_argument("--available", action="store_true",
                        help="train and evaluate nothing: report the cached evaluations that exist "
                        "(the JSON lists what is missing)")
    args = parser.parse_args()
    from speechlm.eval.style import load_style_classifier

    start = time.perf_counter()
    pairs = [(seed, recipe) for seed in args.seeds for recipe in RECIPES]
    if args.available:
        runs = {key: args.work / "runs" / f"{key[1]}-s{key[0]}" for key in pairs}
    else:
        runs = {(seed, recipe): train(recipe, args.work, seed, args.steps) for seed, recipe in pairs}
    if args.train_only:
        return
    per_seed: dict[str, dict[str, dict]] = {r: {} for r in RECIPES}
    prompt_rows: dict[str, dict[str, list[dict]]] = {r: {} for r in RECIPES}
    missing = []
    for seed, recipe in pairs:
        t0, run = time.perf_counter(), runs[seed, recipe]
        if args.available and not (run / "eval-prosody" / "results.json").is_file():
            missing.append(f"{recipe}-s{seed}")
            continue
        entry = evaluate(recipe, run, args.work, args.prompts, args.samples)
        per_seed[recipe][str(seed)] = {m: entry[m] for m in METRICS} | {
            "f0_source": entry["f0_source"], "stream_loss": entry["stream_loss"],
            "vocoder": entry["vocoder"],
            "best_valid_loss": json.loads((run / "best.json").read_text()).get("best_valid_loss")}
        if "per_prompt" in entry:
            prompt_rows[recipe][str(seed)] = entry["per_prompt"]
        print(f"seed {seed} {recipe}: " + ", ".join(
            f"{m} {entry[m]['value']:.3f}" for m in METRICS if entry[m]["value"] is not None)
            + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.no_report:
        return
    summary = {recipe: {m: {"mean": float(np.mean(v)) if v else None, "per_seed": v}
                        for m in METRICS
                        for v in [[s[m]["value"] for s in seeds.values() if s[m]["value"] is not None]]}
               for recipe, seeds in per_seed.items()}

    contrasts = paired_contrasts(per_seed)
    pooled = bootstrap_contrasts(prompt_rows)
    config = {"seeds": args.seeds, "steps": args.steps, "prompts": args.prompts,
              "samples": args.samples, "recipes": RECIPES, "work": str(args.work),
              "overrides": "seq_len=256 batch_size=8 threads=1 for all three",
              "style_classifier_clip_seconds":
                  load_style_classifier(args.work / "style-clf").clip_seconds or "whole utterances",
              "data": json.loads((args.work / "corpus" / "meta.json").read_text()).get("config")}
    path = write_result(args.name, config, summary["pgslm"]["logf0_min_mae"]["mean"],
                        summary["gslm"]["logf0_min_mae"]["mean"],
                        "log-F0 min-MAE (nats, mean over seeds): pgslm-tiny (value) vs gslm-tiny "
                        "(baseline); every metric of every recipe and seed below",
                        summary=summary, per_seed=per_seed, contrasts=contrasts,
                        contrasts_bootstrap=pooled, per_prompt=prompt_rows,
                        missing=missing, seconds=round(time.perf_counter() - start, 1))
    path.with_suffix(".md").write_text(markdown(summary, contrasts, config, pooled))
    print(f"wrote {path}" + (f" (missing: {', '.join(missing)})" if missing else ""))


if __name__ == "__main__":
    main()
