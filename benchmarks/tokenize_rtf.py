"""Tokenization real-time factor (wall seconds per audio second, 1 thread) of each extractor.

Baseline: the ``mfcc`` tokenizer in the same process. ``ssl-tiny`` uses an encoder of the default
size (its weights do not change the speed); ``hf`` a randomly initialised HuBERT-base-sized model
saved to a temp dir. Audio: 60 s of held-out corpus speech (synthesized if no corpus is given).

    .venv/bin/python benchmarks/tokenize_rtf.py [CORPUS_DIR]

Writes benchmarks/results/tokenize_rtf.json (value = ssl-tiny RTF; target <= 0.02).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from speechlm.data.corpus import Corpus  # noqa: E402
from speechlm.tokenizers import load_tokenizer  # noqa: E402
from speechlm.tokenizers.semantic.extractors import (HFExtractor, LogMelExtractor,  # noqa: E402
                                                     MfccExtractor, SslTinyExtractor)
from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer  # noqa: E402
from speechlm.tokenizers.semantic.ssl_tiny import SslTiny, SslTinyConfig  # noqa: E402
from speechlm.tokenizers.semantic.tokenizer import UnitTokenizer  # noqa: E402


def clips(corpus_dir: Path, seconds: float = 60.0) -> list[np.ndarray]:
    out, total = [], 0.0
    for utt in Corpus(corpus_dir).utterances("heldout"):
        out.append(utt.samples())
        total += utt.duration
        if total >= seconds:
            break
    return out


def rtf(tok, audio: list[np.ndarray]) -> float:
    tok.encode(audio[0])  # warm up
    start = time.perf_counter()
    for x in audio:
        tok.encode(x)
    return (time.perf_counter() - start) / (sum(x.size for x in audio) / 16000)


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if len(sys.argv) > 1:
            corpus = Path(sys.argv[1])
        else:
            from speechlm.data.synth import synthesize_corpus
            corpus = tmp / "corpus"
            synthesize_corpus(corpus, hours=0.05, voices=3, heldout_voices=2, show_progress=False)
        audio = clips(corpus)
        from transformers import HubertConfig, HubertModel
        torch.manual_seed(0)
        HubertModel(HubertConfig()).save_pretrained(tmp / "hubert-base-random")
        extractors = {"mfcc": MfccExtractor(), "logmel": LogMelExtractor(),
                      "ssl-tiny": SslTinyExtractor(SslTiny(SslTinyConfig()), 2),
                      "hf:hubert-base(random)": HFExtractor(tmp / "hubert-base-random", 6)}
        results = {}
        for name, ex in extractors.items():
            rng = np.random.default_rng(0)
            quant = KMeansQuantizer(rng.normal(size=(100, ex.dim)), np.zeros(ex.dim), np.ones(ex.dim))
            tok = UnitTokenizer(ex, quant).save(tmp / name.replace(":", "_"))
            results[name] = rtf(load_tokenizer(tok), audio)
            print(f"{name:24s} RTF {results[name]:.4f}", flush=True)
    seconds = sum(x.size for x in audio) / 16000
    path = write_result("tokenize_rtf", {"threads": 1, "units": 100, "audio_seconds": round(seconds, 1),
                                         "ssl_tiny": SslTinyConfig().to_dict()},
                        results["ssl-tiny"], results["mfcc"],
                        "wall s / audio s (ssl-tiny); baseline = mfcc", per_extractor=results,
                        target_ssl_tiny=0.02)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
