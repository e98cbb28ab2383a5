"""Joint speech–text LMs: the five recipes x seeds on one corpus, tokenizer and text LM, evaluated
in four directions, on the cross-modal word test, text BLiMP, speech–text similarity by layer and
few-shot ASR. Writes one JSON, a Markdown table and the similarity-by-layer plot.

    .venv/bin/python benchmarks/joint_speech_text.py --work work --seeds 0 1 2 --jobs 3

Builds what is missing first (the recipes' corpus, ssl-tiny tokenizer, token dataset and text LM,
exactly as `speechlm train` would), speaks and tokenizes the benchmarks once (cached), then trains
and evaluates every (recipe, seed) in ``--jobs`` worker processes of one torch thread each. An
interrupted invocation resumes: training from its checkpoints, and a finished run's evaluation
(``RUN/eval``) is read back instead of recomputed.
``benchmarks/recipe_matrix.py --suite crossmodal`` trains and scores the same recipes the way
every recipe reports (with untrained references and contrasts against the first recipe); this
script adds what is specific to the joint models: text BLiMP against the text LM (the reference of
"text ability kept"), the issue's claims as paired differences, and the similarity-by-layer plot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
RECIPES = ["sutlm-speech-tiny", "sutlm-text-tiny", "sutlm-concat-tiny", "sutlm-interleave-tiny",
           "spiritlm-tiny"]


def paths(work: Path) -> list[str]:
    return [f"corpus_dir={work / 'corpus'}", f"tokenizer_dir={work / 'tokenizer-mfcc'}",
            f"units_dir={work / 'units-mfcc'}", f"text_lm_dir={work / 'text-lm'}"]


def eval_config(work: Path, args) -> object:
    from speechlm.eval.benchmarks import SuiteSizes
    from speechlm.eval.harness import EvalConfig

    return EvalConfig(suite=("crossmodal",), corpus_dir=str(work / "corpus"),
                      cache_dir=str(work / "bench-cache"), reference=False, workers=1,
                      show_progress=False, word_n=args.word_n, generate_n=args.asr_n,
                      sizes=SuiteSizes(storycloze=args.storycloze_n))


def text_blimp(lm, work: Path, args, direction: str | None) -> dict:
    """Text BLiMP (the shipped 67 phenomena, ``--blimp-n`` pairs each), written."""
    from speechlm.eval.benchmarks import syntactic_benchmark
    from speechlm.eval.crossmodal import with_direction
    from speechlm.eval.harness import evaluate_lm

    bench = syntactic_benchmark(args.blimp_n, 0)
    if direction:
        bench = with_direction(bench, direction)
    result = evaluate_lm(lm, [bench], eval_config(work, args), lm.path)["benchmarks"]
    return next(iter(result.values()))


def train_and_eval(recipe: str, seed: int, work: Path, args) -> dict:
    """Train ``recipe`` with ``seed`` (paths under ``work``) and evaluate it; one result row."""
    from speechlm.core.threads import torch_threads
    from speechlm.eval.harness import evaluate
    from speechlm.lm.model import load_speech_lm
    from speechlm.lm.plots import read_metrics
    from speechlm.pipeline import train_from_config

    with torch_threads(1):
        out = work / "joint-runs" / f"{recipe}-s{seed}"
        start = time.perf_counter()
        run = train_from_config(REPO / "configs" / "recipes" / f"{recipe}.yaml",
                                [*paths(work), f"output_dir={out}", f"seed={seed}", "threads=1",
                                 "progress=false", "plot=false", *args.overrides],
                                resume=(out / "metrics.jsonl").is_file())
        train_s = time.perf_counter() - start
        done = run / "eval" / "crossmodal.json"
        if done.is_file() and (run / "eval" / "results.json").is_file():  # resumed: same model
            results = {"benchmarks": json.loads((run / "eval" / "results.json").read_text()),
                       "crossmodal": json.loads(done.read_text())}
        else:
            results = evaluate(run, eval_config(work, args), run / "eval")
        results["benchmarks"]["blimp:text"] = text_blimp(load_speech_lm(run), work, args, "text")
        rows = read_metrics(run)
        tok_s = float(np.median([r["tok_s"] for r in rows if "tok_s" in r]))
        best = json.loads((run / "best.json").read_text())
    return {"recipe": recipe, "seed": seed, "run": str(run), "train_s": round(train_s, 1),
            "tok_s": tok_s, "best_valid_loss": best.get("best_valid_loss"),
            "benchmarks": {k: {f: v[f] for f in ("accuracy", "ci95", "accuracy_mean", "ci95_mean",
                                                 "n", "mean_tokens")}
                           for k, v in results["benchmarks"].items()},
            "crossmodal": results["crossmodal"]}


def prepare(work: Path, args) -> None:
    """Build the shared inputs and speak + tokenize the benchmarks once (cached)."""
    from speechlm.core.config import load_config
    from speechlm.eval.crossmodal import crossmodal_suite
    from speechlm.eval.harness import spoken_units
    from speechlm.eval.spoken import heldout_voices, tokenizer_fingerprint
    from speechlm.lm.config import TrainConfig
    from speechlm.pipeline import prepare_inputs
    from speechlm.tokenizers import load_tokenizer

    cfg = load_config(TrainConfig, REPO / "configs" / "recipes" / "spiritlm-tiny.yaml",
                      [*paths(work), "progress=false"])
    prepare_inputs(cfg, "spiritlm-tiny", text_lm=True)
    config = eval_config(work, args)
    tok_dir = str(work / "tokenizer-mfcc")
    tokenizer, fp = load_tokenizer(tok_dir), tokenizer_fingerprint(tok_dir)
    seen = set()
    for bench in crossmodal_suite(args.storycloze_n, args.word_n, 0):
        if bench.name not in seen:
            seen.add(bench.name)
            spoken_units(bench, config, tokenizer, fp, heldout_voices(config.corpus_dir), {}, tok_dir)


def summarize(rows: list[dict], text_lm: dict) -> dict:
    """Per recipe and benchmark: mean accuracy over seeds, seed range, mean bootstrap interval."""
    out: dict = {}
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]
        entry = {}
        for name in mine[0]["benchmarks"]:
            accs = [r["benchmarks"][name]["accuracy"] for r in mine]
            means = [r["benchmarks"][name]["accuracy_mean"] for r in mine]
            half = [(r["benchmarks"][name]["ci95"][1] - r["benchmarks"][name]["ci95"][0]) / 2
                    for r in mine]
            entry[name] = {"accuracy": float(np.mean(accs)), "seed_min": min(accs),
                           "seed_max": max(accs), "per_seed": accs,
                           "ci95_halfwidth_per_seed": float(np.mean(half)),
                           "accuracy_mean_tokens": float(np.mean(means))}
        sims = np.array([r["crossmodal"]["similarity"]["matched"] for r in mine])
        shuf = np.array([r["crossmodal"]["similarity"]["shuffled"] for r in mine])
        entry["similarity"] = {"matched": sims.mean(0).round(4).tolist(),
                               "shuffled": shuf.mean(0).round(4).tolist(),
                               "gap": (sims - shuf).mean(0).round(4).tolist(),
                               "gap_last": float((sims - shuf)[:, -1].mean()),
                               "gap_mean_layers": float((sims - shuf).mean())}
        entry["asr_wer"] = float(np.mean([r["crossmodal"]["asr"]["wer"] for r in mine]))
        entry["best_valid_loss"] = float(np.mean([r["best_valid_loss"] or np.nan for r in mine]))
        entry["tok_s"] = float(np.mean([r["tok_s"] for r in mine]))
        out[recipe] = entry
    out["text-lm"] = {"blimp:text": {"accuracy": text_lm["accuracy"], "ci95": text_lm["ci95"]}}
    return out


# The comparative claims: (recipe, reference, benchmarks), each a paired per-seed
# difference (same seed, same data and compute) with a 95 % t interval over seeds.
CROSS = ["tstorycloze:s2t", "tstorycloze:t2s", "sstorycloze:s2t", "sstorycloze:t2s",
         "wordtest:s2t", "wordtest:t2s"]
CLAIMS = [("sutlm-interleave-tiny", "sutlm-concat-tiny", CROSS + ["similarity"]),
          ("spiritlm-tiny", "sutlm-concat-tiny", CROSS + ["similarity"]),
          ("sutlm-interleave-tiny", "sutlm-speech-tiny",
           ["tstorycloze:speech", "sstorycloze:speech", "similarity"]),
          ("spiritlm-tiny", "sutlm-speech-tiny",
           ["tstorycloze:speech", "sstorycloze:speech", "similarity"]),
          ("sutlm-interleave-tiny", "sutlm-text-tiny", ["tstorycloze:text", "sstorycloze:text"]),
          ("spiritlm-tiny", "sutlm-text-tiny", ["tstorycloze:text", "sstorycloze:text"])]


def _metric(row: dict, name: str) -> float:
    if name == "similarity":  # matched - shuffled cosine, mean over layers
        return float(np.mean(row["crossmodal"]["similarity"]["gap"]))
    return row["benchmarks"][name]["accuracy"]


def claims(rows: list[dict], text_lm: dict) -> list[dict]:
    """Each claim as ``recipe - reference`` per seed (paired), mean and 95 % t interval; plus the
    warm model's text BLiMP minus its text LM's (the "text ability kept" check, within 0.05)."""
    from recipe_matrix import interval

    by = {(r["recipe"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for recipe, reference, metrics in CLAIMS:
        if not all((name, s) in by for name in (recipe, reference) for s in seeds):
            continue
        for metric in metrics:
            diffs = [_metric(by[recipe, s], metric) - _metric(by[reference, s], metric)
                     for s in seeds]
            out.append({"recipe": recipe, "reference": reference, "metric": metric,
                        **interval(diffs)})
    for recipe in ("spiritlm-tiny", "sutlm-interleave-tiny"):
        if all((recipe, s) in by for s in seeds):
            diffs = [by[recipe, s]["benchmarks"]["blimp:text"]["accuracy"] - text_lm["accuracy"]
                     for s in seeds]
            out.append({"recipe": recipe, "reference": "text-lm", "metric": "blimp:text",
                        **interval(diffs)})
    return out


def claims_markdown(rows: list[dict]) -> str:
    lines = ["| recipe − reference | metric | mean difference [95 % interval over seeds] |",
             "|---|---|---|"]
    for c in rows:
        lo, hi = c["ci95"]
        lines.append(f"| {c['recipe']} − {c['reference']} | {c['metric']} | "
                     f"{c['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] |")
    return "\n".join(lines) + "\n"


COLUMNS = ["tstorycloze:speech", "tstorycloze:text", "tstorycloze:s2t", "tstorycloze:t2s",
           "sstorycloze:speech", "sstorycloze:text", "sstorycloze:s2t", "sstorycloze:t2s",
           "wordtest:s2t", "wordtest:t2s", "blimp:text"]


def markdown(summary: dict, recipes: list[str]) -> str:
    lines = ["| recipe | " + " | ".join(COLUMNS) + " | sim. gap (mean over layers) | "
             "few-shot ASR WER |", "|---|" + "---|" * (len(COLUMNS) + 2)]
    for recipe in recipes:
        e = summary[recipe]
        cells = [f"{e[c]['accuracy']:.3f} ({e[c]['seed_min']:.2f}-{e[c]['seed_max']:.2f})"
                 for c in COLUMNS]
        lines.append(f"| {recipe} | " + " | ".join(cells)
                     + f" | {e['similarity']['gap_mean_layers']:.3f} | {e['asr_wer']:.2f} |")
    t = summary["text-lm"]["blimp:text"]
    lines.append("| text LM (warm source) | " + " | ".join(["–"] * (len(COLUMNS) - 1))
                 + f" | {t['accuracy']:.3f} | – | – |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, recipes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for recipe in recipes:
        sim = summary[recipe]["similarity"]
        ax.plot(range(len(sim["gap"])), sim["gap"], marker="o", label=recipe)
    ax.axhline(0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("cos(speech, text): same - shuffled")
    ax.set_title("speech–text hidden-state similarity by layer")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="work", help="corpus/, tokenizer/, units/, text-lm/")
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=3, help="runs in parallel (1 thread each)")
    parser.add_argument("--storycloze-n", type=int, default=60)
    parser.add_argument("--word-n", type=int, default=150)
    parser.add_argument("--asr-n", type=int, default=30, help="few-shot ASR utterances")
    parser.add_argument("--blimp-n", type=int, default=4, help="text BLiMP pairs per phenomenon")
    parser.add_argument("--name", default="joint_speech_text")
    parser.add_argument("overrides", nargs="*", help="key=value for every recipe")
    args = parser.parse_args()

    from common import RESULTS, machine

    from speechlm.lm.model import load_speech_lm

    work = Path(args.work)
    start = time.perf_counter()
    prepare(work, args)
    text_lm = text_blimp(load_speech_lm(work / "text-lm"), work, args, None)
    jobs = [(recipe, seed) for seed in args.seeds for recipe in args.recipes]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        rows = list(pool.map(train_and_eval, *zip(*[(r, s, work, args) for r, s in jobs])))
    summary = summarize(rows, text_lm)
    paired = claims(rows, text_lm)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"name": args.name, "config": {k: v for k, v in vars(args).items()},
              "summary": summary, "claims": paired, "runs": rows, "seconds": round(time.perf_counter() - start, 1),
              "machine": machine()}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(summary, args.recipes) + "\n" + claims_markdown(paired)
    (RESULTS / f"{args.name}.md").write_text(table)
    plot(summary, args.recipes, RESULTS / f"{args.name}_similarity.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
