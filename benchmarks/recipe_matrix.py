"""Recipes x seeds on one corpus and one tokenizer: training, spoken benchmarks, one table.

Every recipe is trained with every seed through ``speechlm.pipeline`` (the code `speechlm train`
runs) on the same corpus, tokenizer and token dataset (built once under ``--work`` from the
recipes' keys, or given with ``--corpus/--tokenizer/--units/--text-lm``), then scored with the
`speechlm eval` suite (``speechlm.eval.harness``) beside an untrained model of the same
architecture seeded like the run. The JSON and a Markdown table hold, per recipe and benchmark,
the mean over seeds with a 95 % t interval over seeds, every seed's accuracy with its bootstrap
interval, valid loss (best, used for model selection), test loss (the final model, reported
only), training tokens/s; and paired contrasts (same seed): each recipe minus its untrained
reference, and each recipe minus the first recipe (e.g. warm TWIST minus cold GSLM).

    python benchmarks/recipe_matrix.py                       # gslm-tiny, twist-tiny x 3 seeds
    python benchmarks/recipe_matrix.py --recipes gslm-tiny,twist-tiny --seeds 3 \\
        --out benchmarks/results/recipe_matrix.json max_steps=600 twist-tiny:lr=1e-3

``key=value`` overrides apply to every recipe, ``RECIPE:key=value`` to one. A recipe is a name
in ``configs/recipes`` or a YAML path. Later recipe issues (interleaving, prosody, codec LMs,
duplex) report through :func:`run_matrix` / this CLI.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

SHARED_KEYS = ("corpus_hours", "corpus_voices", "tokenizer_features", "tokenizer_units")


@dataclass(frozen=True)
class MatrixConfig:
    """What one matrix run trains and scores; paths None are built under ``work``."""

    recipes: tuple[str, ...] = ("gslm-tiny", "twist-tiny")
    seeds: tuple[int, ...] = (0, 1, 2)
    work: Path = Path("work/matrix")
    overrides: tuple[str, ...] = ()            # key=value (all recipes) or RECIPE:key=value
    corpus: Path | None = None
    tokenizer: Path | None = None
    units: Path | None = None
    text_lm: Path | None = None
    suite: tuple[str, ...] = ("lexical", "syntactic", "storycloze")
    sizes: dict = field(default_factory=dict)  # SuiteSizes keys; empty = `speechlm eval` defaults
    bench_seed: int = 0                        # benchmark sampling seed (the same for every run)
    reuse: bool = False                        # keep finished runs and their scores


def recipe_path(recipe: str) -> Path:
    """``configs/recipes/NAME.yaml`` or an explicit YAML path."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml"):
        return path
    return REPO / "configs" / "recipes" / f"{recipe}.yaml"


def recipe_name(recipe: str) -> str:
    return Path(recipe).stem


def data_overrides(cfg: MatrixConfig) -> list[str]:
    """The shared inputs every run points at (so they are built once and reused)."""
    work = cfg.work
    return [f"corpus_dir={cfg.corpus or work / 'corpus'}",
            f"tokenizer_dir={cfg.tokenizer or work / 'tokenizer'}",
            f"units_dir={cfg.units or work / 'units'}",
            f"text_lm_dir={cfg.text_lm or work / 'text-lm'}"]


def recipe_overrides(cfg: MatrixConfig, recipe: str) -> list[str]:
    """Global overrides, then the ones scoped ``RECIPE:key=value`` to this recipe."""
    name, out = recipe_name(recipe), []
    for item in cfg.overrides:
        scope, sep, rest = item.partition(":")
        if sep and "=" not in scope:
            if scope == name:
                out.append(rest)
        else:
            out.append(item)
    return out


def run_overrides(cfg: MatrixConfig, recipe: str, seed: int) -> list[str]:
    return [*data_overrides(cfg), *recipe_overrides(cfg, recipe), f"seed={seed}",
            f"output_dir={run_dir(cfg, recipe, seed)}", "progress=false"]


def run_dir(cfg: MatrixConfig, recipe: str, seed: int) -> Path:
    return cfg.work / "runs" / f"{recipe_name(recipe)}-seed{seed}"


def prepare(cfg: MatrixConfig) -> dict:
    """Check the recipes share one corpus and tokenizer, then build the missing inputs once."""
    from speechlm.core.config import load_config
    from speechlm.core.errors import ConfigError
    from speechlm.lm.config import TrainConfig
    from speechlm.pipeline import prepare_inputs

    configs = {r: load_config(TrainConfig, recipe_path(r), run_overrides(cfg, r, cfg.seeds[0]))
               for r in cfg.recipes}
    for key in SHARED_KEYS:
        values = {recipe_name(r): getattr(c, key) for r, c in configs.items()}
        if len(set(values.values())) > 1:
            raise ConfigError(f"recipes disagree on {key} ({values}); the matrix trains every "
                              f"recipe on one corpus and tokenizer: override {key}=VALUE")
    timings = {}
    for recipe, train_cfg in configs.items():
        start = time.perf_counter()
        prepare_inputs(train_cfg, str(recipe_path(recipe)))
        timings[recipe_name(recipe)] = round(time.perf_counter() - start, 1)
    first = next(iter(configs.values()))
    return {"corpus": first.corpus_dir, "tokenizer": first.tokenizer_dir,
            "units": first.units_dir, "text_lm": first.text_lm_dir,
            **{key: getattr(first, key) for key in SHARED_KEYS}, "prepare_s": timings}


def train_run(cfg: MatrixConfig, recipe: str, seed: int) -> dict:
    """Train one recipe with one seed (or reuse it); losses, tokens/s and wall time."""
    from speechlm.lm.loop import BEST_JSON
    from speechlm.lm.plots import read_metrics
    from speechlm.pipeline import train_from_config

    out = run_dir(cfg, recipe, seed)
    record = out / "matrix_train.json"
    if cfg.reuse and record.is_file():
        return json.loads(record.read_text())
    start = time.perf_counter()
    train_from_config(recipe_path(recipe), run_overrides(cfg, recipe, seed))
    seconds = time.perf_counter() - start
    rows = read_metrics(out)
    best = json.loads((out / BEST_JSON).read_text())
    rates = [r["tok_s"] for r in rows if "tok_s" in r][1:]  # the first step includes warm-up
    result = {"run_dir": str(out), "train_s": round(seconds, 1), "steps": rows[-1]["step"],
              "tok_s": round(statistics.median(rates)) if rates else None,
              "best_valid_loss": best["best_valid_loss"], "best_step": best["best_step"],
              "last_valid_loss": best.get("last_valid_loss"), "test_loss": best.get("test_loss"),
              "final_model": best.get("final_model"),
              "valid_curve": [[r["step"], round(r["valid_loss"], 4)] for r in rows
                              if "valid_loss" in r]}
    record.write_text(json.dumps(result, indent=2))
    return result


def eval_run(cfg: MatrixConfig, recipe: str, seed: int, benchmarks, tokenizer) -> dict:
    """`speechlm eval` scores of one run and of an untrained copy seeded ``seed``."""
    from speechlm.eval.benchmarks import SuiteSizes
    from speechlm.eval.harness import EvalConfig, crossmodal_analyses, evaluate_lm
    from speechlm.lm.model import load_speech_lm

    out = run_dir(cfg, recipe, seed)
    record = out / "matrix_eval.json"
    if cfg.reuse and record.is_file():
        return json.loads(record.read_text())
    shared = data_overrides(cfg)
    corpus, tok_dir = (item.split("=", 1)[1] for item in shared[:2])
    config = EvalConfig(suite=cfg.suite, tokenizer_dir=tok_dir, corpus_dir=corpus,
                        cache_dir=str(cfg.work / "benchmarks"), seed=seed,
                        sizes=SuiteSizes(**cfg.sizes), show_progress=False)
    start = time.perf_counter()
    lm = load_speech_lm(out)
    results = evaluate_lm(lm, benchmarks, config, out, tokenizer, tok_dir)
    scores = {name: {"accuracy": e["accuracy"], "ci95": e["ci95"], "n": e["n"],
                     "accuracy_mean": e["accuracy_mean"], "untrained": e["untrained"]}
              for name, e in results["benchmarks"].items()}
    result = {"benchmarks": scores, "eval_s": round(time.perf_counter() - start, 1)}
    if "crossmodal" in cfg.suite:  # similarity by layer and few-shot ASR of the trained model
        analyses = crossmodal_analyses(lm, benchmarks, config, tokenizer, tok_dir)
        result.update(crossmodal=analyses, asr_wer=analyses["asr"]["wer"],
                      similarity_gap=statistics.fmean(analyses["similarity"]["gap"]))
    record.write_text(json.dumps(result, indent=2))
    return result


def interval(values: list[float]) -> dict:
    """Mean and 95 % Student-t interval over seeds (a point when there is one seed)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": round(mean, 4), "ci95": [round(mean, 4)] * 2, "values": values}
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)],
            "values": [round(v, 4) for v in values]}


# Per-run figures beside the benchmarks (the crossmodal suite's analyses), summarized the same way.
ANALYSES = ("similarity_gap", "asr_wer")


def summarize(cfg: MatrixConfig, runs: dict[str, dict[int, dict]]) -> dict:
    """Per recipe: benchmarks (mean + interval over seeds), its untrained reference, losses,
    tok/s; contrasts paired by seed against the reference and against the first recipe."""
    names = [recipe_name(r) for r in cfg.recipes]
    table, contrasts = {}, {}
    for name in names:
        seeds = runs[name]
        benches = next(iter(seeds.values()))["eval"]["benchmarks"]
        row = {"benchmarks": {}, "untrained": {}}
        for b in benches:
            row["benchmarks"][b] = interval([s["eval"]["benchmarks"][b]["accuracy"]
                                             for s in seeds.values()])
            row["untrained"][b] = interval([s["eval"]["benchmarks"][b]["untrained"]["accuracy"]
                                            for s in seeds.values()])
        for key in ("best_valid_loss", "test_loss", "tok_s"):
            values = [s["train"][key] for s in seeds.values() if s["train"].get(key) is not None]
            row[key] = interval(values) if values else None
        for key in ANALYSES:
            if all(key in s["eval"] for s in seeds.values()):
                row[key] = interval([s["eval"][key] for s in seeds.values()])
        table[name] = row
        contrasts[f"{name} - untrained"] = {
            b: interval([s["eval"]["benchmarks"][b]["accuracy"]
                         - s["eval"]["benchmarks"][b]["untrained"]["accuracy"]
                         for s in seeds.values()]) for b in benches}
    base = names[0]
    for name in names[1:]:
        common = sorted(set(runs[name]) & set(runs[base]))
        benches = table[name]["benchmarks"]
        contrasts[f"{name} - {base}"] = {
            b: interval([runs[name][s]["eval"]["benchmarks"][b]["accuracy"]
                         - runs[base][s]["eval"]["benchmarks"][b]["accuracy"] for s in common])
            for b in benches}
        contrasts[f"{name} - {base}"]["best_valid_loss"] = interval(
            [runs[name][s]["train"]["best_valid_loss"] - runs[base][s]["train"]["best_valid_loss"]
             for s in common])
        for key in ANALYSES:
            if key in table[name] and key in table[base]:
                contrasts[f"{name} - {base}"][key] = interval(
                    [runs[name][s]["eval"][key] - runs[base][s]["eval"][key] for s in common])
    return {"recipes": table, "contrasts": contrasts}


def _cell(entry: dict | None, digits: int = 3) -> str:
    if not entry:
        return "–"
    lo, hi = entry["ci95"]
    return f"{entry['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown(result: dict) -> str:
    """The README-ready table: one row per recipe and per untrained reference, then contrasts."""
    summary, config = result["summary"], result["config"]
    first = next(iter(summary["recipes"].values()))
    benches = list(first["benchmarks"])
    extra = [key for key in ANALYSES if key in first]
    head = ["recipe", *benches, *extra, "best valid loss", "test loss", "tok/s"]
    lines = [f"Recipe matrix: {', '.join(config['recipes'])} x seeds {config['seeds']} "
             f"(`{config['command']}`). Mean over seeds [95 % t interval over seeds].", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    references: dict[str, list[str]] = {}  # identical untrained rows (same architecture): one
    for name, row in summary["recipes"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row["benchmarks"][b]) for b in benches)
                     + "".join(f" | {_cell(row.get(key))}" for key in extra)
                     + f" | {_cell(row['best_valid_loss'])} | {_cell(row['test_loss'])} | "
                     + (f"{row['tok_s']['mean']:.0f}" if row["tok_s"] else "–") + " |")
        references.setdefault(" | ".join(_cell(row["untrained"][b]) for b in benches),
                              []).append(name)
    for cells, names in references.items():
        lines.append(f"| untrained ({', '.join(names)} arch.) | {cells} |"
                     + " – |" * (len(extra) + 3))
    lines += ["", "Paired differences (same seed), mean [95 % t interval]:", "",
              "| contrast | " + " | ".join([*benches, *extra]) + " | best valid loss |",
              "|" + "---|" * (len(benches) + len(extra) + 2)]
    for name, diff in summary["contrasts"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(diff.get(b)) for b in [*benches, *extra])
                     + f" | {_cell(diff.get('best_valid_loss'))} |")
    return "\n".join(lines) + "\n"


def run_matrix(cfg: MatrixConfig, command: str = "") -> dict:
    """Prepare, train and score every recipe x seed; returns the result record (see module)."""
    from common import machine

    from speechlm.eval.benchmarks import SuiteSizes
    from speechlm.eval.harness import EvalConfig, suite_benchmarks
    from speechlm.tokenizers import load_tokenizer

    start = time.perf_counter()
    data = prepare(cfg)
    benchmarks = suite_benchmarks(EvalConfig(suite=cfg.suite, seed=cfg.bench_seed,
                                             sizes=SuiteSizes(**cfg.sizes)))
    tokenizer = load_tokenizer(data["tokenizer"])
    runs: dict[str, dict[int, dict]] = {}
    for recipe in cfg.recipes:
        name = recipe_name(recipe)
        runs[name] = {}
        for seed in cfg.seeds:
            train = train_run(cfg, recipe, seed)
            scores = eval_run(cfg, recipe, seed, benchmarks, tokenizer)
            runs[name][seed] = {"train": train, "eval": scores}
            lex = scores["benchmarks"].get("lexical", {})
            print(f"[matrix] {name} seed {seed}: best valid {train['best_valid_loss']:.4f}, "
                  f"test {train['test_loss'] or float('nan'):.4f}, "
                  + (f"lexical {lex['accuracy']:.3f} (untrained {lex['untrained']['accuracy']:.3f}), "
                     if lex else "")
                  + f"train {train['train_s']:.0f} s, eval {scores['eval_s']:.0f} s", flush=True)
    summary = summarize(cfg, runs)
    last = summary["recipes"][recipe_name(cfg.recipes[-1])]
    primary = next(iter(last["benchmarks"]))  # the suite's first benchmark (e.g. lexical)
    value, baseline = last["benchmarks"][primary]["mean"], last["untrained"][primary]["mean"]
    units_meta = json.loads((Path(data["units"]) / "meta.json").read_text())
    return {
        "name": "recipe_matrix",
        "config": {"recipes": [recipe_name(r) for r in cfg.recipes], "seeds": list(cfg.seeds),
                   "overrides": list(cfg.overrides), "suite": list(cfg.suite),
                   "sizes": {**SuiteSizes().__dict__, **cfg.sizes}, "bench_seed": cfg.bench_seed,
                   "data": {**data, "utterances": units_meta.get("utterances")},
                   "command": command},
        "value": value, "baseline": baseline, "ratio": value / baseline if baseline else None,
        "unit": f"{primary} accuracy of {recipe_name(cfg.recipes[-1])}, mean over seeds; "
                "baseline: its untrained reference",
        "summary": summary,
        "runs": {name: {str(s): r for s, r in seeds.items()} for name, seeds in runs.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine(),
    }


def write_result(result: dict, out: Path) -> tuple[Path, Path]:
    """``out`` (JSON) and the same path with ``.md`` (the table)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown(result))
    return out, md


def parse_args(argv: list[str] | None = None) -> tuple[MatrixConfig, Path]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="gslm-tiny,twist-tiny",
                        help="comma-separated recipe names (configs/recipes) or YAML paths")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--work", default="work/matrix", help="shared inputs, runs/, cache")
    parser.add_argument("--out", default="benchmarks/results/recipe_matrix.json",
                        help="JSON result; the Markdown table goes next to it (.md)")
    for flag in ("corpus", "tokenizer", "units", "text-lm"):
        parser.add_argument(f"--{flag}", default=None,
                            help=f"existing {flag} directory to reuse (default: built in --work)")
    parser.add_argument("--suite", default="lexical,syntactic,storycloze")
    parser.add_argument("--lexical-n", type=int, default=None)
    parser.add_argument("--syntactic-n", type=int, default=None, help="per BLiMP phenomenon")
    parser.add_argument("--storycloze-n", type=int, default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="keep runs (and their scores) finished by an earlier invocation")
    parser.add_argument("overrides", nargs="*", metavar="[RECIPE:]key=value")
    args = parser.parse_args(argv)
    sizes = {key: value for key, value in (("lexical", args.lexical_n),
                                           ("syntactic_per_phenomenon", args.syntactic_n),
                                           ("storycloze", args.storycloze_n)) if value is not None}
    optional = {key: Path(value) if value else None for key, value in
                (("corpus", args.corpus), ("tokenizer", args.tokenizer), ("units", args.units),
                 ("text_lm", args.text_lm))}
    cfg = MatrixConfig(recipes=tuple(r.strip() for r in args.recipes.split(",") if r.strip()),
                       seeds=tuple(range(args.seeds)), work=Path(args.work),
                       overrides=tuple(args.overrides),
                       suite=tuple(s.strip() for s in args.suite.split(",") if s.strip()),
                       sizes=sizes, reuse=args.reuse, **optional)
    return cfg, Path(args.out)


def main(argv: list[str] | None = None) -> int:
    cfg, out = parse_args(argv)
    command = "python benchmarks/recipe_matrix.py " + " ".join(sys.argv[1:] if argv is None
                                                               else argv)
    json_path, md_path = write_result(run_matrix(cfg, command.strip()), out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
