"""Does style preservation depend on the judge? prosody_lm's runs re-judged by other classifiers.

``benchmarks/prosody_lm.py`` judges continuations with a style classifier trained on 2 s clips
(``--clip-seconds 2``, the continuations' length). This script re-evaluates the unit-only GSLM and
SpiRit-LM-expressive runs of the same work directory with each given classifier on the same
prompts, using only the first sample of every prompt: its sampling seed does not depend on the
number of samples, so it is the very continuation ``prosody_lm.py`` judged (checked against the
cached evaluation when it exists). Per judge: each recipe's style preservation per seed, the
paired difference (mean and 95 % t interval over seeds) and the real continuations' score.

    speechlm prosody style-classifier --corpus W/corpus --out W/style-clf-whole  # whole utterances
    python benchmarks/prosody_style_judges.py --work W --seeds 0 1 2 3 4 \\
        --judge clip2=W/style-clf --judge whole=W/style-clf-whole
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import write_result
from recipe_matrix import interval

RUNS = {"gslm": "voc-units", "spiritlm": "voc-f0"}  # recipe -> the vocoder prosody_lm.py uses


def judge_runs(work: Path, judge: Path, seeds: list[int], prompts: int) -> dict:
    from speechlm.eval.prosody import ProsodyEvalConfig, evaluate_prosody

    out: dict = {}
    for recipe, vocoder in RUNS.items():
        for seed in seeds:
            run = work / "runs" / f"{recipe}-s{seed}"
            cfg = ProsodyEvalConfig(str(work / "corpus"), vocoder_dir=str(work / vocoder),
                                    style_classifier=str(judge), prompts=prompts, samples=1,
                                    plots=0, show_progress=False)
            entry = evaluate_prosody(run, cfg, None)
            predicted = [r["predicted_style"] for r in entry["per_prompt"]]
            cached = run / "eval-prosody" / "results.json"
            if cached.is_file():
                before = json.loads(cached.read_text())["prosody"]
                same_judge = Path(before["style_classifier"]).resolve() == judge.resolve()
                if same_judge and [r["predicted_style"] for r in before.get("per_prompt", [])] \
                        not in ([], predicted):
                    raise SystemExit(f"{run}: sample 0 differs from the cached evaluation")
            sp = entry["style_preservation"]
            out.setdefault(recipe, {})[str(seed)] = {
                "value": sp["value"], "reference": sp["reference"], "chance": sp["chance"],
                "predicted": predicted}
            print(f"{judge.name} {recipe} seed {seed}: {sp['value']:.3f}", flush=True)
    return out


def main() -> None:
    from speechlm.eval.style import load_style_classifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prompts", type=int, default=55)
    parser.add_argument("--judge", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--name", default="prosody_style_judges")
    args = parser.parse_args()
    judges = dict(j.split("=", 1) for j in args.judge)
    results, contrasts = {}, {}
    for name, path in judges.items():
        runs = judge_runs(args.work, Path(path), args.seeds, args.prompts)
        diffs = [runs["spiritlm"][s]["value"] - runs["gslm"][s]["value"] for s in runs["gslm"]]
        results[name] = {"classifier": path, "runs": runs,
                         "clip_seconds": load_style_classifier(path).clip_seconds}
        first_seed = runs["gslm"][str(args.seeds[0])]
        contrasts[name] = {"spiritlm_minus_gslm": interval(diffs), "values": diffs,
                           "reference": first_seed["reference"], "chance": first_seed["chance"],
                           **{recipe: float(np.mean([r["value"] for r in runs[recipe].values()]))
                              for recipe in RUNS}}
    first = contrasts[next(iter(judges))]
    path = write_result(args.name, {"work": str(args.work), "seeds": args.seeds,
                                    "prompts": args.prompts, "judges": judges},
                        first["spiritlm"], first["gslm"],
                        "style preservation, mean over seeds: spiritlm-expressive-tiny (value) vs "
                        "gslm-tiny (baseline) by the first judge; every judge in contrasts",
                        contrasts=contrasts, results=results)
    for name, c in contrasts.items():
        lo, hi = c["spiritlm_minus_gslm"]["ci95"]
        print(f"{name}: gslm {c['gslm']:.3f}, spiritlm {c['spiritlm']:.3f}, difference "
              f"{c['spiritlm_minus_gslm']['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
              f"(real continuations {c['reference']:.3f}, chance {c['chance']:.3f})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
