"""`speechlm demo`: the whole pipeline on the embedded default, ending in an HTML report.

corpus -> tokenizer -> tokens -> text LM -> cold (GSLM) and warm (TWIST) speech LMs -> vocoder
-> eval (both speech LMs on the spoken suite, the text LM on its text version) -> continuations
-> ``REPORT/index.html`` + ``REPORT/report.json``. Each stage runs the same CLI command a user
would and is timed; ``--reuse`` skips stages whose outputs already exist. The four trainings
(text LM, GSLM, TWIST, vocoder) run ``--jobs`` at a time as subprocesses on one thread each, the
rest in process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from speechlm.core.errors import SpeechLMError
from speechlm.eval.benchmarks import SuiteSizes

RECIPES = {"gslm-tiny": "gslm-tiny.yaml", "twist-tiny": "twist-tiny.yaml"}
VOCODER_CONFIG = "demo.yaml"  # configs/vocoder/demo.yaml: the vocoder's fixed step budget
# ssl-tiny's fixed step count, not the command's wall-clock budget, so two demo runs (on any
# machine) train the same tokenizer; the vocoder's budget is in its config file.
SSL_STEPS = 540
# The tokenizer is fitted on at most this much of the train split, so its cost does not grow
# with the corpus the LMs train on.
TOKENIZER_MAX_HOURS = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="run the whole pipeline on the embedded default and write an HTML report",
        description="corpus -> tokenizer -> text LM -> GSLM (cold) and TWIST (warm) tiny speech "
        "LMs -> vocoder -> evaluation -> REPORT/index.html (comparison table, loss curves, "
        "audio continuations) and REPORT/report.json. About 15 minutes on 2 CPU cores.")
    parser.add_argument("--work", default="demo-work", help="work directory (default demo-work)")
    parser.add_argument("--report", default="demo-report", help="report directory (default demo-report)")
    parser.add_argument("--hours", type=float, default=None,
                        help="corpus hours (default: the recipes' corpus_hours)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip stages whose outputs exist in --work (default: rebuild all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=3, help="audio continuations per model")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="training stages run side by side, one torch thread each (default: "
                        "2 on a machine with 2+ cores; 1 = one after another in this process)")
    parser.add_argument("--recipes", default=None,
                        help="folder with gslm-tiny.yaml and twist-tiny.yaml (default: configs/"
                        "recipes of the checkout or the installed package)")
    parser.add_argument("--vocoder-config", default=None,
                        help="vocoder YAML (default: configs/vocoder/demo.yaml of the checkout "
                        "or the installed package)")
    sizes = SuiteSizes()
    parser.add_argument("--lexical-n", type=int, default=sizes.lexical,
                        help=f"lexical pairs (default {sizes.lexical}, as `speechlm eval`)")
    parser.add_argument("--syntactic-n", type=int, default=sizes.syntactic_per_phenomenon,
                        help=f"per BLiMP phenomenon (default {sizes.syntactic_per_phenomenon})")
    parser.add_argument("--storycloze-n", type=int, default=sizes.storycloze,
                        help=f"stories (default {sizes.storycloze})")
    parser.set_defaults(handler=_demo)


def _config_dir(kind: str, files: list[str], explicit: str | None) -> Path:
    """``configs/KIND`` holding ``files``: ``explicit``, the working directory's, the checkout's
    or the installed package's."""
    here = Path(__file__).resolve()
    candidates = [Path(explicit)] if explicit else [Path("configs") / kind,
                                                    here.parents[3] / "configs" / kind,
                                                    here.parents[1] / "configs" / kind]
    for folder in candidates:
        if all((folder / f).is_file() for f in files):
            return folder
    raise SpeechLMError(f"{', '.join(files)} not found in {', '.join(map(str, candidates))}; "
                        f"pass the {kind} folder or file explicitly")


def _shared_keys(recipes: Path) -> dict:
    """Corpus and tokenizer keys of the demo's recipes (which must agree: one corpus and one
    tokenizer for all), and the warm recipe's text LM budget: the recipes drive the demo."""
    from speechlm.core.config import load_config
    from speechlm.lm.config import TrainConfig

    configs = {f: load_config(TrainConfig, recipes / f) for f in RECIPES.values()}
    shared = {}
    for key in ("corpus_hours", "corpus_voices", "tokenizer_features", "tokenizer_units"):
        values = {f: getattr(cfg, key) for f, cfg in configs.items()}
        if len(set(values.values())) > 1:
            raise SpeechLMError(f"{recipes}: the demo trains one corpus and tokenizer for all "
                                f"recipes, but {key} differs: {values}")
        shared[key] = next(iter(values.values()))
    warm = [cfg for cfg in configs.values() if cfg.init == "warm"]
    shared["text_lm_steps"] = warm[0].text_lm_steps if warm else 400
    return shared


def find_model_dir(run_dir: Path) -> Path | None:
    """The model directory inside a run (the run dir itself, or its newest checkpoint)."""
    if (run_dir / "speechlm.json").is_file() and (run_dir / "model.safetensors").is_file():
        return run_dir
    found = sorted(run_dir.glob("**/speechlm.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def untrained_copy(model_dir: Path, out_dir: Path, seed: int) -> Path:
    """Same architecture and vocabulary as ``model_dir``, random weights: the reference row that
    shows what a benchmark gives with no learning (length and acoustic biases)."""
    from dataclasses import replace

    from speechlm.lm.model import build_model, load_speech_lm, save_speech_lm

    lm = load_speech_lm(model_dir)
    model = build_model(lm.model.config, seed=seed + 1)
    return save_speech_lm(out_dir, model, lm.vocab, replace(lm.spec, init="untrained"))


class Stages:
    """Runs and times stages; prints one line per stage and a summary table at the end."""

    def __init__(self, reuse: bool, record: Path | None = None) -> None:
        self.reuse = reuse
        self.record = record  # timings.json in the work dir: reused stages keep their old time
        self.previous = json.loads(record.read_text()) if record and record.is_file() else {}
        self.timings: dict[str, float] = {}
        self.reused: list[str] = []

    def run(self, name: str, done: bool, fn, clear: list[Path] = ()):
        if self.reuse and done:
            print(f"[demo] {name}: reusing existing output", flush=True)
            self.timings[name] = float(self.previous.get(name, 0.0))
            self.reused.append(name)
            return None
        _clear(clear)
        print(f"[demo] {name} ...", flush=True)
        start = time.perf_counter()
        result = fn()
        self._finished(name, start)
        return result

    def _finished(self, name: str, start: float) -> None:
        """Record, print and save a stage's time."""
        self.timings[name] = round(time.perf_counter() - start, 1)
        print(f"[demo] {name}: {self.timings[name]:.1f} s", flush=True)
        if self.record is not None:
            self.record.write_text(json.dumps({**self.previous, **self.timings}, indent=2))


    def run_parallel(self, jobs: list[Job], width: int, logs: Path) -> None:
        """Run the jobs not already done as ``speechlm`` subprocesses, ``width`` at a time, each
        on one torch thread (measured: the whole training phase 409-447 s this way against 529 s
        one after another on two threads), in list order as soon as their ``after`` jobs finished.
        Each job's output goes to ``logs/NAME.log``; a failure stops the others and shows its tail.
        """
        todo = [j for j in jobs if not (self.reuse and j.done)]
        for job in jobs:
            if job not in todo:
                self.run(job.name, True, lambda: None)
        finished = {j.name for j in jobs if j not in todo}
        running: dict[str, tuple[subprocess.Popen, float, Job]] = {}
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "RAYON_NUM_THREADS": "1"}
        try:
            while todo or running:
                ready = [j for j in todo if set(j.after) <= finished]
                while ready and len(running) < width:
                    job = ready.pop(0)
                    todo.remove(job)
                    _clear(job.clear)
                    print(f"[demo] {job.name} ... (log: {logs / job.name}.log)", flush=True)
                    with open(logs / f"{job.name}.log", "w") as log:
                        proc = subprocess.Popen([sys.executable, "-m", "speechlm", *job.argv],
                                                stdout=log, stderr=subprocess.STDOUT, env=env)
                    running[job.name] = (proc, time.perf_counter(), job)
                if not running:
                    raise SpeechLMError(f"demo jobs wait on each other: {[j.name for j in todo]}")
                time.sleep(0.5)
                for name, (proc, start, job) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[name]
                    if proc.returncode != 0:
                        tail = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                        raise SpeechLMError(f"`speechlm {' '.join(job.argv)}` failed with status "
                                            f"{proc.returncode}; its log ends:\n" + "\n".join(tail))
                    self._finished(name, start)
                    finished.add(name)
        finally:
            for proc, _, _ in running.values():
                proc.terminate()


def _clear(paths) -> None:
    """A fresh run of a stage starts from an empty output."""
    for path in paths:
        if path.exists():
            shutil.rmtree(path)


@dataclass
class Job:
    """One `speechlm` command of the demo: its arguments, the jobs it needs first, whether its
    output already exists (for --reuse) and what to clear before a fresh run."""

    name: str
    argv: list[str]
    done: bool
    after: tuple[str, ...] = ()
    clear: tuple[Path, ...] = ()


def _cli(argv: list[str]) -> None:
    """Run a `speechlm` command in process; raise if it fails (its error is already printed)."""
    from speechlm.cli import main

    code = main(argv)
    if code != 0:
        raise SpeechLMError(f"`speechlm {' '.join(argv)}` failed with status {code}")


def _demo(args: argparse.Namespace) -> int:
    work, report_dir = Path(args.work), Path(args.report)
    work.mkdir(parents=True, exist_ok=True)
    recipes = _config_dir("recipes", list(RECIPES.values()), args.recipes)
    vocoder_config = (Path(args.vocoder_config) if args.vocoder_config
                      else _config_dir("vocoder", [VOCODER_CONFIG], None) / VOCODER_CONFIG)
    shared = _shared_keys(recipes)
    hours = args.hours if args.hours is not None else shared["corpus_hours"]
    features, n_units = shared["tokenizer_features"], shared["tokenizer_units"]
    ssl_steps = ["--ssl-steps", str(SSL_STEPS), "--ssl-minutes", "0"] if features == "ssl-tiny" else []
    corpus, tok, units, textlm, voc = (work / n for n in ("corpus", "tok", "units", "textlm", "voc"))
    stages = Stages(args.reuse, work / "timings.json")
    total_start = time.perf_counter()

    stages.run("corpus", (corpus / "meta.json").is_file(), lambda: _cli(
        ["corpus", "synth", "--out", str(corpus), "--hours", str(hours), "--voices",
         str(shared["corpus_voices"]),
         "--seed", str(args.seed)]), [corpus])
    stages.run("tokenizer", (tok / "config.json").is_file(), lambda: _cli(
        ["tokenizer", "train", "--corpus", str(corpus), "--features", features, "--units",
         str(n_units), *ssl_steps, "--max-hours", str(min(hours, TOKENIZER_MAX_HOURS)),
         "--out", str(tok)]), [tok])
    stages.run("tokenize", (units / "meta.json").is_file(), lambda: _cli(
        ["tokenize", "--tokenizer", str(tok), "--corpus", str(corpus), "--out", str(units)]),
        [units])
    tok_metrics_path = work / "tokenizer_metrics.json"

    def tokenizer_eval():
        from speechlm.eval.tokenizer_metrics import evaluate_tokenizer

        metrics = evaluate_tokenizer(tok, corpus, seed=args.seed)  # = `speechlm tokenizer eval`
        tok_metrics_path.write_text(json.dumps(metrics, indent=2))

    stages.run("tokenizer-eval", tok_metrics_path.is_file(), tokenizer_eval)
    threads = ["threads=1"] if args.jobs > 1 else []
    jobs = [Job("text-lm", ["text-lm", "train", "--out", str(textlm), "--seed", str(args.seed),
                            "--steps", str(shared["text_lm_steps"])],
                find_model_dir(textlm) is not None, clear=(textlm,))]
    runs = {}
    for name, recipe in RECIPES.items():
        run_dir = work / name
        runs[name] = run_dir
        overrides = [f"corpus_dir={corpus}", f"tokenizer_dir={tok}", f"units_dir={units}",
                     f"output_dir={run_dir}", f"seed={args.seed}", *threads]
        warm = name.startswith("twist")
        if warm:
            overrides.append(f"text_lm_dir={textlm}")
        jobs.append(Job(name, ["train", "--config", str(recipes / recipe), *overrides],
                        find_model_dir(run_dir) is not None, ("text-lm",) if warm else (),
                        (run_dir,)))
    # started in list order as lanes free up: with 2 lanes, text LM then vocoder on one, GSLM
    # then TWIST on the other (measured at 1 thread: 172 + 257 s and 192 + 196 s)
    jobs.insert(2, Job("vocoder", ["vocoder", "train", "--config", str(vocoder_config), "--corpus",
                                   str(corpus), "--tokenizer", str(tok), "--units", str(units),
                                   "--out", str(voc), *(["--threads", "1"] if threads else [])],
                       (voc / "config.json").is_file(), clear=(voc,)))
    if args.jobs > 1:
        stages.run_parallel(jobs, args.jobs, work / "logs")
    else:
        for job in jobs:
            stages.run(job.name, job.done, lambda a=job.argv: _cli(a), list(job.clear))

    models = {name: find_model_dir(run) for name, run in runs.items()}
    models["text-lm"] = find_model_dir(textlm)
    missing = [n for n, p in models.items() if p is None]
    if missing:
        raise SpeechLMError(f"no trained model found for {', '.join(missing)} in {work}")
    untrained = work / "untrained"
    stages.run("untrained-baseline", find_model_dir(untrained) is not None,
               lambda: untrained_copy(models["gslm-tiny"], untrained, args.seed), [untrained])
    models = {"untrained": untrained, **models}
    results = stages.run("eval", False, lambda: _evaluate(models, tok, corpus, work, args))
    generation = stages.run("generate", False, lambda: _generate(
        models, tok, voc, corpus, report_dir, args))
    from speechlm.eval.report import versus_reference, write_demo_report

    entries = {name: _model_entry(path, results.get(name)) for name, path in models.items()}
    report = {
        "models": entries,
        "tokenizer_metrics": json.loads(tok_metrics_path.read_text())
        if tok_metrics_path.is_file() else {},
        "generation": generation or {},
        "timings": stages.timings,
        "reused_stages": stages.reused,  # their timings come from the run that built them
        "artifacts": {"corpus": str(corpus.resolve()), "tokenizer": str(tok.resolve()),
                      "vocoder": str(voc.resolve())},
        "versus_untrained": versus_reference(  # the speech LMs: the text LM reads text
            {name: entries[name]["results"] for name in ("untrained", *RECIPES)}, "untrained"),
        "config": {"hours": hours, "seed": args.seed, "work": str(work.resolve()),
                   "tokenizer": {"features": features, "units": n_units},
                   "vocoder_config": str(vocoder_config),
                   "sizes": {"lexical": args.lexical_n, "syntactic_per_phenomenon":
                             args.syntactic_n, "storycloze": args.storycloze_n}},
    }
    start = time.perf_counter()
    page = write_demo_report(report, report_dir, runs={**runs, "text-lm": textlm})
    stages.timings["report"] = round(time.perf_counter() - start, 1)
    report["timings"] = stages.timings
    report["wall_s"] = round(time.perf_counter() - total_start, 1)  # stages overlap with --jobs
    (report_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    _print_summary(report, stages.timings, time.perf_counter() - total_start, page)
    return 0


def _model_entry(path: Path, results: dict | None) -> dict:
    """``{path, results: {benchmark: entry}, run: metadata}`` for report.json."""
    from speechlm.eval.harness import split_results

    if results is None:
        return {"path": str(path.resolve()), "results": None, "run": None}
    benchmarks, run = split_results(results)
    return {"path": str(path.resolve()), "results": benchmarks, "run": run}


def _evaluate(models: dict[str, Path], tok: Path, corpus: Path, work: Path, args) -> dict:
    from speechlm.eval.benchmarks import SuiteSizes, build_suite
    from speechlm.eval.harness import EvalConfig, evaluate_lm
    from speechlm.lm.model import load_speech_lm
    from speechlm.tokenizers import load_tokenizer

    config = EvalConfig(tokenizer_dir=str(tok), corpus_dir=str(corpus),
                        cache_dir=str(work / "benchmarks"), seed=args.seed,
                        reference=False,  # the `untrained` model is the reference row
                        sizes=SuiteSizes(args.lexical_n, args.syntactic_n, args.storycloze_n))
    benchmarks = build_suite(config.suite, (), config.seed, config.sizes)
    tokenizer = load_tokenizer(tok)
    out = {}
    for name, path in models.items():
        lm = load_speech_lm(path)
        start = time.perf_counter()
        result = evaluate_lm(lm, benchmarks, config, path,
                             tokenizer if lm.kind != "text" else None,
                             str(tok) if lm.kind != "text" else None)
        result["seconds"] = round(time.perf_counter() - start, 2)
        out[name] = result
        (work / f"eval-{name}.json").write_text(json.dumps(result, indent=2))
        print(f"[demo]   eval {name}: {result['seconds']:.1f} s", flush=True)
    return out


def _generate(models: dict[str, Path], tok: Path, voc: Path, corpus: Path, report_dir: Path,
              args) -> dict:
    from speechlm.data.audio import write_wav
    from speechlm.data.corpus import Corpus
    from speechlm.eval.generation_metrics import continue_prompts, generation_metrics
    from speechlm.lm.model import load_speech_lm
    from speechlm.tokenizers import load_tokenizer
    from speechlm.vocoder import load_vocoder

    heldout = list(Corpus(corpus).utterances("heldout"))
    heldout = [u for u in heldout if u.duration >= 3.0][: args.samples] or heldout[: args.samples]
    prompts = [u.samples() for u in heldout]
    tokenizer, vocoder = load_tokenizer(tok), load_vocoder(voc)
    text_lm = load_speech_lm(models["text-lm"])
    out = {}
    audio_dir = report_dir / "audio"
    for k, u in enumerate(heldout):
        write_wav(audio_dir / f"prompt-{k}.wav", prompts[k][: int(2.0 * 16000)])
    for name, path in models.items():
        if name in ("text-lm", "untrained"):
            continue
        lm = load_speech_lm(path)
        conts = continue_prompts(lm, tokenizer, vocoder, prompts, prompt_seconds=2.0,
                                 max_new_tokens=150, temperature=0.8, top_k=50, seed=args.seed)
        samples = []
        for k, c in enumerate(conts):
            rel = f"audio/{name}-{k}.wav"
            write_wav(report_dir / rel, c.audio)
            samples.append({"prompt_text": heldout[k].text, "prompt_wav": f"audio/prompt-{k}.wav",
                            "wav": rel, "transcript": c.transcript,
                            "units": len(c.units)})
        out[name] = {"metrics": generation_metrics(conts, text_lm), "samples": samples}
    return out


def _print_summary(report: dict, timings: dict, total: float, page: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    names = [n for n, m in report["models"].items() if m.get("results")]
    benches = sorted({b for n in names for b in report["models"][n]["results"]})
    table = Table(title="demo: accuracy [95% CI]")
    table.add_column("benchmark")
    for n in names:
        table.add_column(n, justify="right")
    for b in benches:
        row = []
        for n in names:
            e = report["models"][n]["results"].get(b)
            row.append(f"{e['accuracy']:.3f} [{e['ci95'][0]:.2f}, {e['ci95'][1]:.2f}]" if e else "-")
        table.add_row(b, *row)
    console.print(table)
    timing = Table(title="stage timings")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    for stage, seconds in timings.items():
        timing.add_row(stage, f"{seconds:.1f}")
    timing.add_row("[bold]total (wall)", f"{total:.1f}")
    console.print(timing)
    print(f"report: {page}")
    sys.stdout.flush()
