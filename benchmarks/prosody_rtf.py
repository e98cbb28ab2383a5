"""Prosody extraction real-time factor (seconds per audio second on the 2-core machine, 1 torch
thread as `speechlm prosody encode` uses by default), and the accuracy of the F0 extractors on
signals with a known F0 contour.

Timed on 60 s of held-out corpus speech (a styled corpus is synthesized if none is given):

* ``praat_f0``: F0 only (``extract_f0``, what every prosody tokenizer runs first);
* ``unit_prosody``: F0 + pGSLM duration/F0 streams for given units (the value; target <= 0.02);
* ``unit_prosody_with_mfcc_units``: the same plus computing the units with an mfcc tokenizer;
* ``pitch_vq`` / ``style``: pitch and style tokens (default model sizes, random weights);
* baselines in the same run: the ``mfcc`` unit tokenizer, and pyworld DIO+StoneMask and Harvest
  when pyworld is installed (``pip install 'setuptools<81' pyworld``).

Accuracy: 12 synthetic 3 s harmonic signals (F0 60-300 Hz with +-15% vibrato, voiced/unvoiced
gating, noise): median error in cents, gross errors (> 20% = 316 cents) and voicing errors.

    .venv/bin/python benchmarks/prosody_rtf.py [CORPUS_DIR]

Writes benchmarks/results/prosody_rtf.json (value = unit_prosody CPU-time RTF, baseline = the
mfcc tokenizer's; wall-clock RTFs of every method are recorded too).
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
from speechlm.tokenizers import load_tokenizer, train_tokenizer  # noqa: E402
from speechlm.tokenizers.prosody import (F0Config, PitchVQConfig, PitchVQTokenizer,  # noqa: E402
                                         SpeakerNorm, StyleTokenizer, UnitProsodyTokenizer,
                                         extract_f0)
from speechlm.tokenizers.prosody.bins import duration_bins, fit_quantiles  # noqa: E402
from speechlm.tokenizers.prosody.features import FEATURE_NAMES  # noqa: E402
from speechlm.tokenizers.prosody.f0 import cents  # noqa: E402
from speechlm.tokenizers.prosody.pitch_vq import PitchVQVAE  # noqa: E402
from speechlm.tokenizers.semantic.kmeans import KMeansQuantizer  # noqa: E402

RATE, HOP = 16_000, 160
CONFIG = F0Config()


def pyworld_methods() -> dict:
    try:
        import pyworld
    except ImportError:
        return {}

    def dio(x):
        x = x.astype(np.float64)
        f0, t = pyworld.dio(x, RATE, f0_floor=CONFIG.floor, f0_ceil=CONFIG.ceiling, frame_period=10)
        return pyworld.stonemask(x, f0, t, RATE)[: x.size // HOP]

    def harvest(x):
        f0, _ = pyworld.harvest(x.astype(np.float64), RATE, f0_floor=CONFIG.floor,
                                f0_ceil=CONFIG.ceiling, frame_period=10)
        return f0[: x.size // HOP]

    return {"pyworld_dio": dio, "pyworld_harvest": harvest}


def synthetic(n: int = 12, seconds: float = 3.0,
              seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(samples, true F0 per 10 ms frame centre, 0 = unvoiced) pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.arange(int(seconds * RATE)) / RATE
        f = rng.uniform(60, 300) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
        voiced = np.sin(2 * np.pi * rng.uniform(0.8, 2) * t + rng.uniform(0, 6)) > -0.3
        phase = 2 * np.pi * np.cumsum(f) / RATE
        x = sum(np.sin(k * phase) / k for k in range(1, 20)) * voiced * 0.1
        x = (x + rng.normal(0, 3e-3, t.size)).astype(np.float32)
        centres = ((np.arange(t.size // HOP) + 0.5) * HOP).astype(int)
        out.append((x, np.where(voiced[centres], f[centres], 0.0)))
    return out


def accuracy(fn, signals) -> dict:
    errors, gross, voicing = [], [], []
    for x, truth in signals:
        est = fn(x)[: truth.size]
        both = (est > 0) & (truth[: est.size] > 0)
        e = cents(est[both], truth[: est.size][both])
        errors.append(e)
        gross.append(e > 1200 * np.log2(1.2))
        voicing.append((est > 0) != (truth[: est.size] > 0))
    return {"median_cents": float(np.median(np.concatenate(errors))),
            "gross_error_rate": float(np.concatenate(gross).mean()),
            "voicing_error_rate": float(np.concatenate(voicing).mean())}


def rtf(fn, audio: list[np.ndarray]) -> tuple[float, float]:
    """(wall, CPU) seconds per audio second. On a shared machine the wall time is inflated by
    other jobs; process CPU time is not (for single-threaded code it is the idle-core wall time)."""
    fn(audio[0])  # warm up
    wall, cpu = time.perf_counter(), time.process_time()
    for x in audio:
        fn(x)
    seconds = sum(x.size for x in audio) / RATE
    return (time.perf_counter() - wall) / seconds, (time.process_time() - cpu) / seconds


def main() -> None:
    torch.set_num_threads(1)  # what `speechlm prosody encode` uses by default (--threads 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if len(sys.argv) > 1:
            corpus = Path(sys.argv[1])
        else:
            from speechlm.data.synth import synthesize_corpus
            corpus = tmp / "corpus"
            synthesize_corpus(corpus, hours=0.05, voices=3, heldout_voices=2, show_progress=False,
                              styles=["neutral", "excited", "sad", "question", "whisper"])
        audio, total = [], 0.0
        for utt in Corpus(corpus).utterances("heldout"):
            audio.append(utt.samples())
            total += utt.duration
            if total >= 60:
                break
        units = load_tokenizer(train_tokenizer(corpus, tmp / "mfcc", features="mfcc",
                                               units=100, show_progress=False))
        rng = np.random.default_rng(0)
        norm = SpeakerNorm({}, float(np.log(150)))
        unit_prosody = UnitProsodyTokenizer(fit_quantiles(rng.normal(size=1000), 32),
                                            duration_bins(np.arange(1, 50)), norm, CONFIG, 50.0)
        encoded = {id(x): units.encode(x) for x in audio}
        pitch = PitchVQTokenizer(PitchVQVAE(PitchVQConfig()), PitchVQConfig(), norm, CONFIG)
        style = StyleTokenizer(KMeansQuantizer(rng.normal(size=(32, len(FEATURE_NAMES))),
                                               np.zeros(len(FEATURE_NAMES)),
                                               np.ones(len(FEATURE_NAMES))), CONFIG)
        methods = {
            "praat_f0": lambda x: extract_f0(x, CONFIG),
            "unit_prosody": lambda x: unit_prosody.encode(x, units=encoded[id(x)]),
            "unit_prosody_with_mfcc_units": lambda x: unit_prosody.encode(x, units=units.encode(x)),
            "pitch_vq": lambda x: pitch.encode(x),
            "style": lambda x: style.encode(x),
            "mfcc_units": lambda x: units.encode(x),
            **pyworld_methods(),
        }
        wall, cpu = {}, {}
        for name, fn in methods.items():
            wall[name], cpu[name] = rtf(fn, audio)
            print(f"{name:30s} RTF wall {wall[name]:.4f} cpu {cpu[name]:.4f}", flush=True)
    signals = synthetic()
    f0_methods = {"praat": lambda x: extract_f0(x, CONFIG),
                  **{k.removeprefix("pyworld_"): v for k, v in pyworld_methods().items()}}
    acc = {name: accuracy(fn, signals) for name, fn in f0_methods.items()}
    for name, row in acc.items():
        print(f"{name:10s} {row}")
    seconds = sum(x.size for x in audio) / RATE
    config = {"torch_threads": 1, "cores": 2, "audio_seconds": round(seconds, 1),
              "f0": CONFIG.to_dict(), "pitch_vq": PitchVQConfig().__dict__, "style_k": 32}
    path = write_result("prosody_rtf", config,
                        cpu["unit_prosody"], cpu["mfcc_units"],
                        "CPU s / audio s (F0 + unit duration/F0 streams); baseline = mfcc "
                        "unit tokenizer", cpu_rtf=cpu, wall_rtf=wall, target=0.02,
                        f0_accuracy_synthetic=acc,
                        note="2 cores shared with other jobs; compare ratios, not absolute times")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
