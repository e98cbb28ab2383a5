"""F0 tokenizer round trip on held-out voices: audio -> tokens -> F0 contour, error in cents.

Synthesizes a styled corpus (so there is intonation to keep), fits an mfcc unit tokenizer (K=100),
the pGSLM unit-prosody tokenizer (32 equal-mass F0 bins) and the pitch VQ-VAE (64 codes,
12.5 Hz) on the training voices, and scores the held-out voices (:mod:`roundtrip`). Baselines
in the same run: the flat contour at the subtracted mean F0 (zero information), and the same
unit tokenizer with 32 equal-width bins over the same log-F0 range instead of quantiles.

    .venv/bin/python benchmarks/prosody_roundtrip.py [--hours 0.3] [--vq-steps 1000]

Writes benchmarks/results/prosody_roundtrip.json (value = unit-prosody median cents of the
20 ms contour, baseline = the flat contour's median cents).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import numpy as np  # noqa: E402

from speechlm.data.synth import synthesize_corpus  # noqa: E402
from speechlm.tokenizers import train_tokenizer  # noqa: E402
from speechlm.tokenizers.prosody import (load_prosody_tokenizer, train_pitch_vq,  # noqa: E402
                                         train_unit_prosody)
from speechlm.tokenizers.prosody.bins import Bins  # noqa: E402
from speechlm.tokenizers.prosody.roundtrip import roundtrip_error  # noqa: E402

STYLES = ["neutral", "excited", "sad", "question", "whisper"]


def equal_width(tokenizer_dir: Path, out_dir: Path) -> Path:
    """A copy of a unit-prosody tokenizer whose F0 bins split its quantile range evenly."""
    tok = load_prosody_tokenizer(tokenizer_dir)
    low, high = tok.f0_bins.edges[0], tok.f0_bins.edges[-1]
    edges = np.linspace(low, high, tok.f0_bins.n - 1)
    step = edges[1] - edges[0]
    centers = np.r_[low - step / 2, (edges[1:] + edges[:-1]) / 2, high + step / 2]
    tok.f0_bins = Bins(edges, centers)
    return tok.save(out_dir)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=0.3)
    parser.add_argument("--voices", type=int, default=12)
    parser.add_argument("--heldout-voices", type=int, default=4)
    parser.add_argument("--vq-steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "styled"
        synthesize_corpus(corpus, hours=args.hours, voices=args.voices,
                          heldout_voices=args.heldout_voices, seed=args.seed, styles=STYLES,
                          show_progress=False)
        units = train_tokenizer(corpus, tmp / "mfcc", features="mfcc", units=100, seed=args.seed,
                                show_progress=False)
        unit = train_unit_prosody(corpus, units, tmp / "unit", show_progress=False)
        vq = train_pitch_vq(corpus, tmp / "vq", steps=args.vq_steps, seed=args.seed, threads=2,
                            show_progress=False)
        results = {}
        for name, path in (("unit_prosody", unit), ("unit_prosody_equal_width", equal_width(unit, tmp / "ew")),
                           ("pitch_vq", vq)):
            row = roundtrip_error(path, corpus, "heldout", show_progress=False)
            results[name] = {k: v for k, v in row.items() if k not in ("tokenizer", "corpus")}
            print(name, {k: round(v, 3) if isinstance(v, float) else v
                         for k, v in results[name].items()}, flush=True)
        vq_training = load_prosody_tokenizer(vq).info["training"]
    value = results["unit_prosody"]["median_cents"]
    path = write_result("prosody_roundtrip", vars(args) | {"styles": STYLES, "units": "mfcc K=100",
                                                           "f0_bins": 32, "pitch_codes": 64},
                        value, results["unit_prosody"]["flat_median_cents"],
                        "median |cents| of the decoded 20 ms F0 contour on held-out voices; "
                        "baseline = flat contour at the subtracted mean F0",
                        per_tokenizer=results, pitch_vq_training=vq_training,
                        seconds=round(time.monotonic() - start, 1),
                        note="2 cores shared with other jobs")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
