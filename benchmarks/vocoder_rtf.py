"""Vocoder real-time factor (wall s / audio s, 1 thread): neural (acoustic model + Vocos generator) vs the
Griffin-Lim baseline (32 iterations) from the same predicted mel, in one process.

    .venv/bin/python benchmarks/vocoder_rtf.py [VOCODER_DIR]

Without a trained vocoder, a randomly initialised default-size one is timed (same speed).
Writes benchmarks/results/vocoder_rtf.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from speechlm.vocoder import load_vocoder  # noqa: E402
from speechlm.vocoder.model import VocoderConfig  # noqa: E402
from speechlm.vocoder.unit_vocoder import UnitVocoder  # noqa: E402


def rtf(voc, sequences, **kw) -> float:
    voc.synthesize(*sequences[0], **kw)  # warm up
    start = time.perf_counter()
    samples = sum(voc.synthesize(u, d, **kw).size for u, d in sequences)
    return (time.perf_counter() - start) / (samples / 16000)


def main() -> None:
    torch.set_num_threads(1)
    if len(sys.argv) > 1:
        voc = load_vocoder(sys.argv[1])
    else:
        torch.manual_seed(0)
        voc = UnitVocoder(VocoderConfig(), [f"s{i}" for i in range(12)]).eval()
    rng = np.random.default_rng(0)
    # 20 utterances of ~4 s: 140 deduplicated units of 1-2 frames each
    sequences = [(rng.integers(0, voc.config.vocab_size, 140), rng.integers(1, 3, 140)) for _ in range(20)]
    neural = rtf(voc, sequences)
    gl = rtf(voc, sequences, griffin_lim_baseline=True)
    path = write_result("vocoder_rtf", {"threads": 1, "vocoder": voc.config.to_dict(),
                                        "griffin_lim_iterations": 32},
                        neural, gl, "wall s / audio s; baseline = Griffin-Lim from the same mel")
    print(f"neural vocoder RTF {neural:.4f}, Griffin-Lim RTF {gl:.4f}; wrote {path}")


if __name__ == "__main__":
    main()
