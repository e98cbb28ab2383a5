"""`speechlm eval`: score one model on a suite of benchmarks and write results + report.

A speech LM hears the spoken benchmarks through its speech tokenizer (recorded in the model
directory, or ``--tokenizer``); a text LM reads the text versions of the same pairs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechlm.eval.benchmarks import Benchmark, SuiteSizes, build_suite
from speechlm.eval.scoring import score_pairs

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    suite: tuple[str, ...] = ("lexical", "syntactic", "storycloze")
    pairs_files: tuple[str, ...] = ()
    tokenizer_dir: str | None = None
    corpus_dir: str | None = None      # to find the held-out voices of the training corpus
    cache_dir: str | None = None
    seed: int = 0
    dedup: bool = True
    sizes: SuiteSizes = field(default_factory=SuiteSizes)
    max_batch_tokens: int = 16384
    show_progress: bool = True
    tokenize_threads: int | None = 1   # torch threads while tokenizing benchmark audio


def context_length(lm) -> int | None:
    """Scoring window: the training block length when the model records it (tiny models never
    saw positions beyond it), else the model's maximum positions."""
    config = getattr(lm.model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    meta = getattr(lm, "meta", None) or {}
    trained = meta.get("seq_len") or (meta.get("config") or {}).get("seq_len")
    if trained:
        return int(min(trained, limit)) if limit else int(trained)
    return limit


def resolve_tokenizer(lm, model_dir: str | Path, tokenizer_dir: str | None):
    """Load the speech tokenizer for a speech LM and check it matches the LM's unit vocabulary
    (the one resolver generation and evaluation share)."""
    from speechlm.lm.modeldir import resolve_tokenizer as resolve

    return resolve(lm, model_dir, tokenizer_dir)


def check_vocab(lm, tokenizer, model_dir, tokenizer_dir) -> None:
    from speechlm.lm.modeldir import check_units

    check_units(lm, tokenizer.vocab_size, model_dir, tokenizer_dir)


def benchmark_ids(lm, benchmark: Benchmark, config: EvalConfig, tokenizer=None,
                  tok_key: str | None = None, voices=None, memo: dict | None = None
                  ) -> tuple[list[list[int]], list[list[int]]]:
    """Token id sequences (BOS + tokens) of the good and bad items for this LM."""
    if lm.kind == "text":
        return ([lm.encode_text(p.text("good")) for p in benchmark.pairs],
                [lm.encode_text(p.text("bad")) for p in benchmark.pairs])
    from speechlm.eval.spoken import encode_benchmark, render_audio

    audio = render_audio(benchmark, voices, config.cache_dir, config.show_progress)
    good, bad = encode_benchmark(benchmark, audio, tokenizer, tok_key, config.dedup,
                                 config.cache_dir, memo, config.show_progress,
                                 config.tokenize_threads)
    return ([lm.encode_units(u.tolist()) for u in good], [lm.encode_units(u.tolist()) for u in bad])


def evaluate_lm(lm, benchmarks: list[Benchmark], config: EvalConfig, model_dir: str | Path,
                tokenizer=None, tokenizer_dir: str | None = None) -> dict:
    """Score a loaded LM on built benchmarks; returns the results dict (see :func:`evaluate`)."""
    tok_key = voices = None
    if lm.kind != "text":
        from speechlm.eval.spoken import heldout_voices, tokenizer_key

        if tokenizer is None:
            tokenizer, tokenizer_dir = resolve_tokenizer(lm, model_dir, config.tokenizer_dir)
        else:
            check_vocab(lm, tokenizer, model_dir, tokenizer_dir)
        tok_key = tokenizer_key(tokenizer_dir) if tokenizer_dir else "custom"
        voices = heldout_voices(config.corpus_dir)
    memo: dict = {}
    results = {}
    for bench in benchmarks:
        start = time.perf_counter()
        good, bad = benchmark_ids(lm, bench, config, tokenizer, tok_key, voices, memo)
        summary = score_pairs(lm.model, good, bad, [p.group for p in bench.pairs],
                              window=context_length(lm), max_batch_tokens=config.max_batch_tokens,
                              seed=config.seed)
        summary.update({"version": bench.version, "fingerprint": bench.fingerprint(),
                        "modality": "text" if lm.kind == "text" else "speech",
                        "seconds": round(time.perf_counter() - start, 2)})
        results[bench.name] = summary
        log.info("%s: accuracy %.3f [%.3f, %.3f] (n=%d)", bench.name, summary["accuracy"],
                 *summary["ci95"], summary["n"])
    return {"model": str(Path(model_dir).resolve()), "kind": lm.kind,
            "tokenizer": tokenizer_dir, "dedup": config.dedup, "seed": config.seed,
            "benchmarks": results}


def split_results(results: dict) -> tuple[dict, dict]:
    """``({benchmark: {accuracy, ci95, n, ...}}, {model, kind, tokenizer, ...})``: what
    ``results.json`` and ``run.json`` hold."""
    return results["benchmarks"], {k: v for k, v in results.items() if k != "benchmarks"}


def evaluate(model_dir: str | Path, config: EvalConfig, out_dir: str | Path | None = None) -> dict:
    """Build the suite (bad ``--pairs`` files fail first), load ``model_dir``, score, and write
    ``results.json`` (one entry per benchmark), ``run.json`` (model metadata) and the report."""
    from speechlm.lm.model import load_speech_lm

    benchmarks = build_suite(config.suite, config.pairs_files, config.seed, config.sizes)
    lm = load_speech_lm(model_dir)
    tokenizer = tokenizer_dir = None
    if lm.kind != "text":  # fail on a mismatch before building anything
        tokenizer, tokenizer_dir = resolve_tokenizer(lm, model_dir, config.tokenizer_dir)
    elif config.tokenizer_dir:
        log.warning("%s is a text LM; --tokenizer is ignored", model_dir)
    start = time.perf_counter()
    results = evaluate_lm(lm, benchmarks, config, model_dir, tokenizer, tokenizer_dir)
    results["seconds"] = round(time.perf_counter() - start, 2)
    if out_dir is not None:
        from speechlm.eval.report import write_eval_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        benchmarks, run = split_results(results)
        (out / "results.json").write_text(json.dumps(benchmarks, indent=2), encoding="utf-8")
        (out / "run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
        write_eval_report(results, out)
    return results
