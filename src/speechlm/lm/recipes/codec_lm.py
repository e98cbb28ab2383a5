"""One autoregressive codec LM over K codebooks in any layout (flatten, parallel, delay, with or
without the depth transformer), trained on ``tasks`` (``[tts, continue]``: one VioLA-style model
whose task token selects phoneme-conditioned TTS or unconditional continuation).

``run(cfg)``: codec token dataset (``tokens_dir``) -> prompted examples -> packed blocks -> model
-> :func:`speechlm.lm.loop.train_loop`.
"""

from __future__ import annotations

from pathlib import Path

from speechlm.lm.codec.sequences import codec_family
from speechlm.lm.codec.train import load_dataset, n_codebooks, train_ar
from speechlm.lm.config import TrainConfig


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    dataset, _ = load_dataset(cfg, source)
    K = n_codebooks(cfg, dataset)
    return train_ar(cfg, tuple(codec_family(k) for k in range(K)), cfg.tasks or ["tts"], "ar",
                    resume, source, codebook_index=list(range(K)))
