"""Prosody tokenizers: pGSLM duration + F0 streams aligned with units, SpiRit-LM pitch (VQ-VAE)
and style tokens. Each is a directory; :func:`load_prosody_tokenizer` opens any of them.

>>> from speechlm.tokenizers.prosody import load_prosody_tokenizer      # doctest: +SKIP
>>> tok = load_prosody_tokenizer("runs/prosody")                         # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from speechlm.core.errors import CheckpointError
from speechlm.tokenizers.prosody.common import read_config
from speechlm.tokenizers.prosody.f0 import F0Config, SpeakerNorm, extract_f0
from speechlm.tokenizers.prosody.pitch_vq import PitchVQConfig, PitchVQTokenizer, train_pitch_vq
from speechlm.tokenizers.prosody.style import StyleTokenizer, train_style_tokenizer
from speechlm.tokenizers.prosody.unit_prosody import (UnitProsody, UnitProsodyTokenizer,
                                                      train_unit_prosody)

ProsodyTokenizer = UnitProsodyTokenizer | PitchVQTokenizer | StyleTokenizer
_KINDS = {cls.kind: cls for cls in (UnitProsodyTokenizer, PitchVQTokenizer, StyleTokenizer)}


def load_prosody_tokenizer(path: str | Path) -> ProsodyTokenizer:
    """Open a prosody tokenizer directory of any kind; CheckpointError naming what is wrong."""
    path = Path(path)
    config = read_config(path)
    cls = _KINDS.get(config.get("kind"))
    if cls is None:
        raise CheckpointError(f"{path / 'config.json'}: unknown prosody tokenizer kind "
                              f"{config.get('kind')!r} (known: {', '.join(_KINDS)})")
    return cls.load(path, config)


__all__ = ["F0Config", "PitchVQConfig", "PitchVQTokenizer", "ProsodyTokenizer", "SpeakerNorm",
           "StyleTokenizer", "UnitProsody", "UnitProsodyTokenizer", "extract_f0",
           "load_prosody_tokenizer", "train_pitch_vq", "train_style_tokenizer", "train_unit_prosody"]
