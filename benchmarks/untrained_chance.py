"""Untrained-at-chance check: do the benchmarks measure the LM, or the items' lengths?

Summed log-likelihood favours the item with fewer units, so an untrained model scores above 0.5
wherever the good item tends to be the shorter one. This script builds the spoken suite twice, as
it was built before the length controls (the builders and assets of commit ``BEFORE``, read with
git, at their old default sizes) and as it is built now, speaks both with the default held-out
voices, tokenizes them with K = 100 tokenizers (MFCC + k-means fitted on the benchmark audio, and
the random-weight ssl-tiny of ``eval_suite.py``), and scores every pair with untrained LMs of the
demo's architecture (``configs/recipes/gslm-tiny.yaml``: preset, seq_len) for several init seeds,
through the same functions ``speechlm eval`` uses. Per tokenizer, suite and benchmark it writes
the share of pairs whose good item has fewer units (ending units for StoryCloze), each seed's
accuracy with its 95% interval, and the accuracy pooled over seeds (per-pair mean outcome) with a
95% bootstrap interval over pairs, which must contain 0.5.

    .venv/bin/python benchmarks/untrained_chance.py [--tokenizers mfcc] [--cache DIR]  # ~10 min on 2 idle cores

``value`` is the largest distance of a pooled untrained accuracy from 0.5 over the benchmarks
built now (MFCC units); ``baseline`` the same for the benchmarks as built before.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from common import write_result  # noqa: E402
from eval_suite import random_ssl_tokenizer  # noqa: E402

BEFORE = "c8c1a95"  # main before issue 18: lexical 200, syntactic 12 x 12, storycloze 60
RECIPE = REPO / "configs" / "recipes" / "gslm-tiny.yaml"


def suite_before(root: Path) -> list:
    """The suite as commit BEFORE built it: its builders module and assets, from git."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(REPO), *args], check=True,
                              capture_output=True).stdout

    archive = git("archive", BEFORE, "src/speechlm/eval/assets", "src/speechlm/eval/benchmarks.py")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    folder = root / "src" / "speechlm" / "eval"
    spec = importlib.util.spec_from_file_location("benchmarks_before", folder / "benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    module._assets = lambda: folder / "assets"
    return module.build_suite(["lexical", "syntactic", "storycloze"])


def mfcc_tokenizer(root: Path, suite, voices, cache: Path, frames: int = 100_000) -> Path:
    """MFCC + k-means (K = 100) fitted on frames of the suite's own audio."""
    import numpy as np

    from speechlm.data.audio import read_audio
    from speechlm.eval.spoken import render_audio
    from speechlm.tokenizers.semantic.extractors import MfccExtractor
    from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer
    from speechlm.tokenizers.semantic.tokenizer import UnitTokenizer

    extractor, feats, total = MfccExtractor(), [], 0
    for bench in suite:
        audio = render_audio(bench, voices, cache).to_pydict()
        for column in ("good", "bad"):
            for flac in audio[column][::4]:
                feats.append(extractor(read_audio(flac)))
                total += len(feats[-1])
        if total >= frames:
            break
    quantizer = KMeansQuantizer.fit(np.concatenate(feats), 100, seed=0)
    return UnitTokenizer(extractor, quantizer).save(root / "mfcc")


def untrained_lms(seeds: list[int]) -> list:
    """SpeechLMs of the demo recipe's architecture and block length, random weights."""
    import yaml

    from speechlm.lm.model import SpeechLM, build_model, model_config
    from speechlm.lm.modeldir import ModelMeta
    from speechlm.lm.vocab import SpeechVocab

    recipe = yaml.safe_load(RECIPE.read_text())
    vocab = SpeechVocab.for_units(int(recipe["tokenizer_units"]))
    config = model_config(recipe["preset"], vocab)
    meta = ModelMeta.single("speech", seq_len=int(recipe["seq_len"]))
    return [SpeechLM(build_model(config, seed=s).eval(), vocab, meta, Path("untrained"))
            for s in seeds]


def check(bench, lms, tokenizer, tok_dir: Path, voices, config, memo: dict) -> dict:
    """Unit-length shares and untrained accuracies of one benchmark."""
    import numpy as np

    from speechlm.eval.harness import benchmark_ids, context_length
    from speechlm.eval.scoring import accuracy_ci, compare, sequence_logprobs
    from speechlm.eval.spoken import tokenizer_fingerprint

    ids = benchmark_ids(lms[0], bench, config, tokenizer, tokenizer_fingerprint(tok_dir), voices,
                        memo)
    good_len = np.array([len(g) - s for g, s in zip(ids.good, ids.good_starts)])
    bad_len = np.array([len(b) - s for b, s in zip(ids.bad, ids.bad_starts)])
    identical = [g == b for g, b in zip(ids.good, ids.bad)]
    outcomes, seeds = [], []
    for lm in lms:
        scores = sequence_logprobs(lm.model, ids.good + ids.bad, config.max_batch_tokens,
                                   context_length(lm), starts=ids.good_starts + ids.bad_starts,
                                   threads=config.workers)
        outcome = compare(scores[:len(ids.good)], scores[len(ids.good):], "sum", identical)
        acc, ci = accuracy_ci(outcome)
        seeds.append({"accuracy": round(acc, 4), "ci95": [round(ci[0], 4), round(ci[1], 4)],
                      "contains_chance": ci[0] <= 0.5 <= ci[1]})
        outcomes.append(outcome)
    pooled, pooled_ci = accuracy_ci(np.mean(outcomes, axis=0))
    return {"n": len(ids.good), "version": bench.version,
            "good_fewer_units": round(float(np.mean(good_len < bad_len)), 4),
            "equal_units": round(float(np.mean(good_len == bad_len)), 4),
            "good_minus_bad_units_mean": round(float(np.mean(good_len - bad_len)), 2),
            "pooled": {"accuracy": round(pooled, 4),
                       "ci95": [round(pooled_ci[0], 4), round(pooled_ci[1], 4)],
                       "contains_chance": pooled_ci[0] <= 0.5 <= pooled_ci[1]},
            "seeds": seeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="untrained init seeds (default 5)")
    parser.add_argument("--tokenizers", default="mfcc,ssl-tiny-random")
    parser.add_argument("--cache", default=None,
                        help="audio/units cache to keep between runs (default: a temporary one)")
    args = parser.parse_args()

    import torch

    from speechlm.eval.benchmarks import SuiteSizes, build_suite
    from speechlm.eval.harness import EvalConfig
    from speechlm.eval.spoken import heldout_voices
    from speechlm.tokenizers import load_tokenizer

    torch.set_num_threads(2)
    start = time.perf_counter()
    seeds = list(range(args.seeds))
    voices = heldout_voices()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = Path(args.cache) if args.cache else root / "cache"
        config = EvalConfig(cache_dir=str(cache), show_progress=True)
        suites = {"before": suite_before(root / "before"),
                  "after": build_suite(["lexical", "syntactic", "storycloze"])}
        lms = untrained_lms(seeds)
        tok_dirs = {"mfcc": lambda: mfcc_tokenizer(root, suites["after"], voices, cache),
                    "ssl-tiny-random": lambda: random_ssl_tokenizer(root)}
        for name in args.tokenizers.split(","):
            tok_dir = tok_dirs[name]()
            tokenizer, memo = load_tokenizer(tok_dir), {}
            for suite, benches in suites.items():
                for bench in benches:
                    row = check(bench, lms, tokenizer, tok_dir, voices, config, memo)
                    results.setdefault(name, {}).setdefault(suite, {})[bench.name] = row
                    print(f"{name:16s} {suite:6s} {bench.name:12s} n={row['n']:4d} "
                          f"good fewer units {row['good_fewer_units']:.3f}  untrained "
                          f"{row['pooled']['accuracy']:.3f} {row['pooled']['ci95']}", flush=True)
    first = results[args.tokenizers.split(",")[0]]

    def worst(suite: str) -> float:
        return round(max(abs(r["pooled"]["accuracy"] - 0.5) for r in first[suite].values()), 4)

    after_ok = all(r["pooled"]["contains_chance"] for by_suite in results.values()
                   for r in by_suite["after"].values())
    path = write_result(
        "untrained_chance",
        {"before": f"commit {BEFORE} builders and sizes", "after": vars(SuiteSizes()),
         "seeds": seeds, "recipe": str(RECIPE.relative_to(REPO)), "tokenizers": list(results),
         "voices": [v.name for v in voices]},
        worst("after"), worst("before"),
        "max |pooled untrained accuracy - 0.5| over benchmarks (first tokenizer); baseline = "
        "the benchmarks as built before",
        all_after_intervals_contain_chance=after_ok, seconds=round(time.perf_counter() - start),
        results=results)
    print(f"after: every pooled interval contains 0.5: {after_ok}; wrote {path}")


if __name__ == "__main__":
    main()
