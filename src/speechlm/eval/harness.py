"""`speechlm eval`: score one model on a suite of benchmarks and write results + report.

A speech LM hears the spoken benchmarks through its speech tokenizer (recorded in the model
directory, or ``--tokenizer``); a text LM reads the text versions of the same pairs. Every
benchmark entry also holds the score of an untrained model of the same architecture on the same
token ids (``untrained``): the benchmarks are built so that it sits at chance, and a trained
model is read against it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechlm.eval.benchmarks import Benchmark, SuiteSizes, build_suite, length_balanced
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
    tokenize_threads: int | None = 1   # torch threads per process tokenizing benchmark audio
    workers: int = 2                   # processes speaking and tokenizing, threads scoring
    reference: bool = True             # also score an untrained model of the same architecture
    balance: bool = True               # drop pairs so that token-length differences are symmetric
    modality: str | None = None        # --pairs in a direction (joint speech–text models)
    word_n: int | None = 200           # crossmodal suite: cross-modal word test pairs
    vocoder_dir: str | None = None     # crossmodal suite: TTS intelligibility through it
    generate_n: int = 30               # crossmodal suite: utterances for few-shot ASR and TTS


@dataclass(frozen=True)
class PairIds:
    """One benchmark's items as token ids for one LM, and where scoring starts in each (after
    BOS, or after the shared context of a StoryCloze item)."""

    good: list[list[int]]
    bad: list[list[int]]
    good_starts: list[int]
    bad_starts: list[int]

    def length_deltas(self) -> list[int]:
        """Scored tokens of the bad item minus those of the good item, per pair."""
        return [(len(b) - bs) - (len(g) - gs) for g, b, gs, bs
                in zip(self.good, self.bad, self.good_starts, self.bad_starts)]

    def subset(self, keep: list[int]) -> PairIds:
        return PairIds(*([field[i] for i in keep] for field in
                         (self.good, self.bad, self.good_starts, self.bad_starts)))


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


def _text_item(lm, pair, which: str) -> tuple[list[int], int]:
    """BOS + BPE ids of one item, and the position after its context's tokens (1 without one)."""
    ids = lm.encode_text(pair.text(which))
    if not pair.prefix:
        return ids, 1
    context = lm.encode_text(pair.prefix)
    shared = next((k for k, (a, b) in enumerate(zip(context, ids)) if a != b), len(context))
    return ids, max(1, min(shared, len(ids)))


def benchmark_ids(lm, benchmark: Benchmark, config: EvalConfig, tokenizer=None,
                  tokenizer_fp: str | None = None, voices=None, memo: dict | None = None,
                  tokenizer_dir: str | None = None) -> PairIds:
    """Token id sequences (BOS + tokens) of the good and bad items for this LM."""
    if benchmark.params.get("modality"):  # joint speech–text models: a direction per benchmark
        from speechlm.eval.crossmodal import direction_ids, needs_speech

        spoken = spoken_units(benchmark, config, tokenizer, tokenizer_fp, voices, memo,
                              tokenizer_dir) if needs_speech(benchmark) else None
        return PairIds(*direction_ids(lm, benchmark, spoken))
    if lm.kind == "text":
        good = [_text_item(lm, p, "good") for p in benchmark.pairs]
        bad = [_text_item(lm, p, "bad") for p in benchmark.pairs]
        return PairIds([g for g, _ in good], [b for b, _ in bad], [s for _, s in good],
                       [s for _, s in bad])
    good, bad, context = spoken_units(benchmark, config, tokenizer, tokenizer_fp, voices, memo,
                                      tokenizer_dir)
    starts = [len(lm.encode_units(g[:c].tolist())) for g, c in zip(good, context)]
    return PairIds([lm.encode_units(u.tolist()) for u in good],
                   [lm.encode_units(u.tolist()) for u in bad], starts, list(starts))


def spoken_units(benchmark: Benchmark, config: EvalConfig, tokenizer, tokenizer_fp, voices, memo,
                 tokenizer_dir):
    """(good units, bad units, prefix lengths): the benchmark spoken by the held-out voices and
    tokenized (both cached)."""
    from speechlm.eval.spoken import encode_benchmark, render_audio

    audio = render_audio(benchmark, voices, config.cache_dir, config.show_progress,
                         config.workers)
    return encode_benchmark(benchmark, audio, tokenizer, tokenizer_fp, config.dedup,
                            config.cache_dir, memo, config.show_progress,
                            config.tokenize_threads, tokenizer_dir, config.workers)


HEARD_BINS = ((0, 0), (1, 3), (4, 9), (10, None))  # times a lexical word occurs in training


def heard_groups(words: list[str], corpus_dir: str | Path) -> list[str] | None:
    """Each lexical word's group by how often it occurs in the transcripts of the corpus's train
    split (``heard 0 times``, ``heard 1-3 times``, ``heard 4-9 times``, ``heard 10+ times``): a
    speech LM can only know words it has heard, so the overall accuracy mixes learning with
    coverage (ZeroSpeech reports sWUGGY on in-vocabulary words for the same reason). None without
    train transcripts."""
    import re
    from collections import Counter

    from speechlm.data.corpus import Corpus

    texts = Corpus(corpus_dir).table("train", ["text"]).column("text").to_pylist()
    if not any(texts):
        return None
    counts = Counter(w for t in texts for w in re.findall(r"[a-z']+", (t or "").lower()))

    def label(n: int) -> str:
        lo, hi = next((lo, hi) for lo, hi in HEARD_BINS if hi is None or n <= hi)
        span = f"{lo}" if lo == hi else f"{lo}+" if hi is None else f"{lo}-{hi}"
        return f"heard {span} times"

    return [label(counts[w.lower()]) for w in words]


def untrained_copy(lm, seed: int):
    """The LM's architecture with fresh random weights (seeded), in eval mode."""
    from speechlm.lm.model import build_model

    return build_model(lm.model.config, seed=seed).eval()


def _score(model, ids: PairIds, groups: list[str], lm, config: EvalConfig) -> dict:
    return score_pairs(model, ids.good, ids.bad, groups, window=context_length(lm),
                       max_batch_tokens=config.max_batch_tokens, seed=config.seed,
                       good_starts=ids.good_starts, bad_starts=ids.bad_starts,
                       threads=config.workers)


def evaluate_lm(lm, benchmarks: list[Benchmark], config: EvalConfig, model_dir: str | Path,
                tokenizer=None, tokenizer_dir: str | None = None) -> dict:
    """Score a loaded LM on built benchmarks; returns the results dict (see :func:`evaluate`).

    With ``config.reference`` each entry gets ``untrained``: accuracy, interval and per-token
    variant of an untrained copy (:func:`untrained_copy`, seed ``config.seed``) on the same ids.
    """
    tok_fp = voices = None
    if lm.kind != "text":
        from speechlm.eval.spoken import heldout_voices, tokenizer_fingerprint

        if tokenizer is None:
            tokenizer, tokenizer_dir = resolve_tokenizer(lm, model_dir, config.tokenizer_dir)
        else:
            check_vocab(lm, tokenizer, model_dir, tokenizer_dir)
        tok_fp = tokenizer_fingerprint(tokenizer_dir) if tokenizer_dir else None
        voices = heldout_voices(config.corpus_dir)
    reference = untrained_copy(lm, config.seed) if config.reference else None
    memo: dict = {}
    results = {}
    for bench in benchmarks:
        start = time.perf_counter()
        ids = benchmark_ids(lm, bench, config, tokenizer, tok_fp, voices, memo, tokenizer_dir)
        groups = [p.group for p in bench.pairs]
        if bench.name == "lexical" and config.corpus_dir:
            groups = heard_groups([p.good for p in bench.pairs], config.corpus_dir) or groups
        if config.balance:  # the builders balance phonemes; this balances the model's tokens
            keep = length_balanced(ids.length_deltas(), config.seed)
            if len(keep) < len(groups):
                log.info("%s: %d of %d pairs left out to balance token lengths (--no-balance "
                         "scores all)", bench.name, len(groups) - len(keep), len(groups))
            ids, groups = ids.subset(keep), [groups[i] for i in keep]
        summary = _score(lm.model, ids, groups, lm, config)
        if reference is not None:
            untrained = _score(reference, ids, groups, lm, config)
            summary["untrained"] = {k: untrained[k] for k in
                                    ("accuracy", "ci95", "accuracy_mean", "ci95_mean")}
        summary.update({"pairs": len(bench.pairs), "version": bench.version,
                        "fingerprint": bench.fingerprint(),
                        "modality": bench.params.get("modality")
                        or ("text" if lm.kind == "text" else "speech"),
                        "seconds": round(time.perf_counter() - start, 2)})
        results[bench.params.get("label", bench.name)] = summary
        log.info("%s: accuracy %.3f [%.3f, %.3f] (n=%d)", bench.name, summary["accuracy"],
                 *summary["ci95"], summary["n"])
    return {"model": str(Path(model_dir).resolve()), "kind": lm.kind,
            "tokenizer": tokenizer_dir, "dedup": config.dedup, "seed": config.seed,
            "reference": f"untrained, seed {config.seed}" if config.reference else None,
            "benchmarks": results}


def crossmodal_analyses(lm, benchmarks: list[Benchmark], config: EvalConfig, tokenizer,
                        tokenizer_dir) -> dict:
    """Similarity by layer, few-shot ASR and TTS WER (``--vocoder``) on the StoryCloze endings."""
    from speechlm.eval.crossmodal import analyses
    from speechlm.eval.spoken import heldout_voices, tokenizer_fingerprint

    cloze = next(b for b in benchmarks if b.params.get("label") == "tstorycloze:speech")
    spoken = spoken_units(cloze, config, tokenizer, tokenizer_fingerprint(tokenizer_dir),
                          heldout_voices(config.corpus_dir), {}, tokenizer_dir)
    vocoder = None
    if config.vocoder_dir:
        from speechlm.lm.modeldir import check_units
        from speechlm.vocoder import load_vocoder

        vocoder = load_vocoder(config.vocoder_dir)
        check_units(lm, vocoder.config.vocab_size, lm.path, config.vocoder_dir, "vocoder")
    return analyses(lm, cloze, spoken, vocoder, config.seed, generate_n=config.generate_n)


def split_results(results: dict) -> tuple[dict, dict]:
    """``({benchmark: {accuracy, ci95, n, ...}}, {model, kind, tokenizer, ...})``: what
    ``results.json`` and ``run.json`` hold."""
    return results["benchmarks"], {k: v for k, v in results.items() if k != "benchmarks"}


def suite_benchmarks(config: EvalConfig) -> list[Benchmark]:
    """The benchmarks ``config`` names: its suite (``crossmodal`` = the four-direction StoryClozes
    and the word test) and ``--pairs`` files, the files turned to ``--modality`` if given."""
    benchmarks = build_suite([s for s in config.suite if s != "crossmodal"], config.pairs_files,
                             config.seed, config.sizes)
    if config.modality or "crossmodal" in config.suite:
        from speechlm.eval.crossmodal import crossmodal_suite, with_direction

        if config.modality:
            benchmarks = [with_direction(b, config.modality) if b.name.startswith("pairs:") else b
                          for b in benchmarks]
        if "crossmodal" in config.suite:
            benchmarks += crossmodal_suite(config.sizes.storycloze, config.word_n, config.seed)
    return benchmarks


def evaluate(model_dir: str | Path, config: EvalConfig, out_dir: str | Path | None = None) -> dict:
    """Build the suite (bad ``--pairs`` files fail first), load ``model_dir``, score, and write
    ``results.json`` (one entry per benchmark), ``run.json`` (model metadata) and the report."""
    from speechlm.lm.model import load_speech_lm

    benchmarks = suite_benchmarks(config)
    lm = load_speech_lm(model_dir)
    if any(b.params.get("modality") for b in benchmarks):
        from speechlm.generation.modality import require_joint

        require_joint(lm, f"--modality {config.modality}" if config.modality
                      else "--suite crossmodal")
    tokenizer = tokenizer_dir = None
    if lm.kind != "text":  # fail on a mismatch before building anything
        tokenizer, tokenizer_dir = resolve_tokenizer(lm, model_dir, config.tokenizer_dir)
    elif config.tokenizer_dir:
        log.warning("%s is a text LM; --tokenizer is ignored", model_dir)
    start = time.perf_counter()
    results = evaluate_lm(lm, benchmarks, config, model_dir, tokenizer, tokenizer_dir)
    if "crossmodal" in config.suite:
        results["crossmodal"] = crossmodal_analyses(lm, benchmarks, config, tokenizer,
                                                    tokenizer_dir)
    results["seconds"] = round(time.perf_counter() - start, 2)
    if out_dir is not None:
        from speechlm.eval.report import write_eval_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        benchmarks, run = split_results(results)
        (out / "results.json").write_text(json.dumps(benchmarks, indent=2), encoding="utf-8")
        (out / "run.json").write_text(json.dumps(run, indent=2), encoding="utf-8")
        if "crossmodal" in results:
            (out / "crossmodal.json").write_text(json.dumps(results["crossmodal"], indent=2),
                                                 encoding="utf-8")
        write_eval_report(results, out)
    return results
