"""Wall time of the full spoken eval suite (lexical, syntactic, t/sStoryCloze) for a tiny model.

With ``--model DIR`` (e.g. the demo's ``demo-work/gslm-tiny``) the model and the tokenizer it
records are measured as they are: what the demo's models cost. Without it, the model is the
``tiny`` preset Llama over 100 units and the tokenizer an ssl-tiny encoder with 100 centroids,
both with random weights (no training needed; that tokenizer does not deduplicate runs the way
trained units do, so its sequences are longer than a trained tokenizer's). ``value`` is a cold run at the default sizes (espeak audio + tokenizing +
scoring the model and its untrained reference); ``baseline`` is the same suite again in the same
process with the audio/unit cache warm (scoring only), which is what a second model sharing the
tokenizer pays. Both also record CPU seconds (this process, its threads and every worker
process): on a shared machine wall time grows with the other jobs, CPU time hardly does, and on
2 idle cores the wall time is at most about the CPU time. Writes
benchmarks/results/eval_suite.json.
"""

from __future__ import annotations

import multiprocessing.forkserver
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

BUDGET_S = 180.0


def random_ssl_tokenizer(root: Path) -> Path:
    """An ssl-tiny tokenizer with random encoder weights and 100 random centroids: the demo
    tokenizer's architecture and cost, no training."""
    import numpy as np
    import torch

    from speechlm.tokenizers.semantic.extractors import SslTinyExtractor
    from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer
    from speechlm.tokenizers.semantic.ssl_tiny import SslTiny, SslTinyConfig
    from speechlm.tokenizers.semantic.tokenizer import UnitTokenizer

    torch.manual_seed(0)
    config = SslTinyConfig()
    extractor = SslTinyExtractor(SslTiny(config), config.layers)
    rng = np.random.default_rng(0)
    quantizer = KMeansQuantizer(rng.normal(size=(100, config.dim)), np.zeros(config.dim),
                                np.ones(config.dim))
    return UnitTokenizer(extractor, quantizer).save(root / "tok")


def tiny_model_and_tokenizer(root: Path) -> tuple[Path, Path]:
    from speechlm.lm.model import build_model, model_config, save_speech_lm
    from speechlm.lm.vocab import SpeechVocab

    tok_dir = random_ssl_tokenizer(root)
    vocab = SpeechVocab.for_units(100)
    model = build_model(model_config("tiny", vocab), seed=0)
    model_dir = save_speech_lm(root / "lm", model, vocab, "speech", str(tok_dir))
    return model_dir, tok_dir


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children, including the forkserver's
    workers (the forkserver is stopped so that it and the workers it reaped are counted)."""
    multiprocessing.forkserver._forkserver._stop()
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    cpu, start = cpu_seconds(), time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    return result, wall, cpu_seconds() - cpu


def main() -> None:
    import argparse

    import torch

    from speechlm.eval.harness import EvalConfig, evaluate
    from speechlm.lm.model import load_speech_lm

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trained model dir (default: random)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.model:
            model_dir = Path(args.model).resolve()
            lm = load_speech_lm(model_dir)
            model_name = f"{model_dir} ({lm.model.config.num_hidden_layers} layers)"
            tokenizer_name = str(lm.tokenizer_dir)
        else:
            model_dir, _ = tiny_model_and_tokenizer(root)
            model_name, tokenizer_name = "tiny preset, 100 units, random", "ssl-tiny, random"
        config = EvalConfig(cache_dir=str(root / "cache"), show_progress=False)
        cold, cold_s, cold_cpu = timed(lambda: evaluate(model_dir, config, root / "out"))
        _, warm_s, warm_cpu = timed(lambda: evaluate(model_dir, config, root / "out2"))
    per = {name: {"n": e["n"], "seconds": e["seconds"], "mean_tokens": round(e["mean_tokens"], 1)}
           for name, e in cold["benchmarks"].items()}
    path = write_result("eval_suite", {"suite": list(config.suite), "sizes": vars(config.sizes),
                                       "model": model_name, "tokenizer": tokenizer_name,
                                       "untrained_reference": config.reference,
                                       "workers": config.workers},
                        round(cold_s, 1), round(warm_s, 1),
                        "seconds (cold cache); baseline = warm cache, scoring only",
                        cold_cpu_s=round(cold_cpu, 1), warm_cpu_s=round(warm_cpu, 1),
                        load_average_1min=[round(load, 1), round(os.getloadavg()[0], 1)],
                        budget_s=BUDGET_S, within_budget_wall=cold_s <= BUDGET_S,
                        within_budget_cpu=cold_cpu <= BUDGET_S, benchmarks=per)
    print(f"spoken suite: {cold_s:.1f} s cold ({cold_cpu:.1f} CPU s), {warm_s:.1f} s warm "
          f"({warm_cpu:.1f} CPU s); budget {BUDGET_S:.0f} s; load average {load:.1f}; "
          f"wrote {path}")
    for name, row in per.items():
        print(f"  {name}: n={row['n']} {row['seconds']} s, {row['mean_tokens']} tokens/item")


if __name__ == "__main__":
    main()
