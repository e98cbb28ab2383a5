"""VALL-E (Wang et al. 2023): an autoregressive model of codebook 1 from phonemes and the
prompt's codebook-1 tokens (``output_dir/ar``), and a non-autoregressive model of codebook j from
codebooks < j, the phonemes and the whole acoustic prompt (``output_dir/nar``), each trained for
``max_steps``. ``speechlm tts --model output_dir`` runs both.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from speechlm.core.files import atomic_write_json
from speechlm.lm.codec.sequences import codec_family
from speechlm.lm.codec.train import train_ar, train_nar
from speechlm.lm.config import TrainConfig

TTS_FILE = "tts.json"


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    out = Path(cfg.output_dir)
    ar = train_ar(replace(cfg, output_dir=str(out / "ar"), layout="flatten", delays=None,
                          depth_layers=0), (codec_family(0),), ["tts"], "ar", resume, source,
                  codebook_index=[0])
    nar = train_nar(replace(cfg, output_dir=str(out / "nar")), "tts", 1, resume, source)
    atomic_write_json(out / TTS_FILE, {"kind": "valle", "ar": ar.name, "nar": nar.name,
                                       "recipe": cfg.name})
    return out


def read_stages(model_dir: Path) -> dict | None:
    """The stages of a multi-model run dir (``tts.json``), or None for a single model dir."""
    path = Path(model_dir) / TTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
