"""Typed training configs of the three prosody tokenizers (``speechlm prosody train KIND``).

>>> from speechlm.core.config import build_config
>>> build_config(StyleTrainConfig, {"corpus": "c", "out": "o", "k": "8"}, source="<doc>").k
8
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechlm.core.errors import ConfigError
from speechlm.tokenizers.prosody.f0 import F0Config


@dataclass(frozen=True)
class _Common:
    corpus: str = ""                # corpus directory
    out: str = ""                   # output tokenizer directory
    split: str = "train"            # split to fit on
    max_hours: float | None = None  # use at most this much audio
    f0_floor: float = 60.0          # Hz, Praat pitch floor
    f0_ceiling: float = 650.0       # Hz, Praat pitch ceiling

    def validate(self) -> list[str]:
        problems = [f"{key} is required" for key in ("corpus", "out") if not getattr(self, key)]
        try:
            self.f0()
        except ConfigError as err:
            problems.append(str(err))
        return problems

    def f0(self) -> F0Config:
        return F0Config(floor=self.f0_floor, ceiling=self.f0_ceiling)


@dataclass(frozen=True)
class UnitProsodyTrainConfig(_Common):
    """pGSLM duration + F0 streams."""

    unit_tokenizer: str = ""        # unit tokenizer directory the streams align with
    f0_bins: int = 32               # equal-mass bins of normalised log-F0
    interpolate: bool = True        # unvoiced units get interpolated log-F0 (else a token)
    exact_durations: int = 20       # durations 1..N frames are their own token
    max_duration: int = 100         # longer durations share the last token
    duration_bins: int = 32         # duration vocabulary

    def validate(self) -> list[str]:
        return super().validate() + ([] if self.unit_tokenizer else ["unit_tokenizer is required"])


@dataclass(frozen=True)
class PitchVQTrainConfig(_Common):
    """SpiRit-LM pitch tokens: VQ-VAE over speaker-normalised F0."""

    codebook_size: int = 64
    downsample: int = 4             # 50 Hz F0 frames per code (12.5 Hz)
    channels: int = 64
    code_dim: int = 32
    steps: int = 1000
    batch_size: int = 32
    segment: int = 64               # frames per training crop (1.28 s)
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1


@dataclass(frozen=True)
class StyleTrainConfig(_Common):
    """SpiRit-LM-like style tokens: k-means over pooled window features."""

    k: int = 32
    window_s: float = 1.0           # one token per window
    seed: int = 0
    threads: int = 1


SCHEMAS = {"unit": UnitProsodyTrainConfig, "pitch-vq": PitchVQTrainConfig, "style": StyleTrainConfig}


def train_prosody_tokenizer(cfg: _Common, show_progress: bool = True) -> Path:
    """Fit the tokenizer ``cfg`` describes (its type picks the kind)."""
    from speechlm.tokenizers.prosody.pitch_vq import PitchVQConfig, train_pitch_vq
    from speechlm.tokenizers.prosody.style import train_style_tokenizer
    from speechlm.tokenizers.prosody.unit_prosody import train_unit_prosody

    common = {"split": cfg.split, "f0_config": cfg.f0(), "max_hours": cfg.max_hours,
              "show_progress": show_progress}
    if isinstance(cfg, UnitProsodyTrainConfig):
        return train_unit_prosody(cfg.corpus, cfg.unit_tokenizer, cfg.out, f0_bins=cfg.f0_bins,
                                  interpolate=cfg.interpolate, exact_durations=cfg.exact_durations,
                                  max_duration=cfg.max_duration, duration_bins_n=cfg.duration_bins,
                                  **common)
    if isinstance(cfg, PitchVQTrainConfig):
        model = PitchVQConfig(cfg.codebook_size, cfg.downsample, cfg.channels, cfg.code_dim)
        return train_pitch_vq(cfg.corpus, cfg.out, config=model, steps=cfg.steps,
                              batch_size=cfg.batch_size, segment=cfg.segment, lr=cfg.lr,
                              seed=cfg.seed, threads=cfg.threads, **common)
    return train_style_tokenizer(cfg.corpus, cfg.out, k=cfg.k, window_s=cfg.window_s, seed=cfg.seed,
                                 threads=cfg.threads, **common)
