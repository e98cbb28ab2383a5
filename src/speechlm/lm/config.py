"""The recipe schema: every key a `speechlm train` YAML file may set, checked before any work.

``load_config(TrainConfig, path, overrides)`` (``speechlm.core.config``) parses a recipe into this
frozen dataclass; unknown keys and bad values fail naming the file and the key. A key belongs here
when a recipe sets it; what a run derives (precision, attention kernel) is resolved by the loop and
written back into the run's ``config.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

# the tasks a codec LM trains on (speechlm.lm.codec.sequences builds their examples)
CODEC_TASKS = ("tts", "continue", "semantic", "asr")


@dataclass(frozen=True)
class TrainConfig:
    """Every recipe key. Paths are relative to the working directory."""

    name: str = "run"
    recipe: str = "pretrain"                     # recipe module that runs it (speechlm.lm.recipes)
    sequence: str = "pretrain"                   # sequence builder (speechlm.lm.sequences)
    sequence_options: dict[str, Any] | None = None  # the builder's own keys (it checks them)
    kind: Literal["speech", "text"] = "speech"
    init: Literal["cold", "warm"] = "cold"        # warm = TWIST from text_lm_dir
    # data locations (built when missing)
    corpus_dir: str = "work/corpus"
    corpus_hours: float = 0.5
    corpus_voices: int = 12
    corpus_styles: list[str] | None = None       # speaking styles of a synthesized corpus (labels)
    tokenizer_dir: str = "work/tokenizer"
    tokenizer_features: str = "ssl-tiny"
    tokenizer_units: int = 100
    units_dir: str = "work/units"
    tokens_dir: str | None = None                # multi-stream dataset to train on (else units_dir)
    derive_streams: list[str] | None = None      # build tokens_dir from units_dir + these streams
    prosody_tokenizers: list[str] | None = None  # KIND=DIR (unit, pitch-vq, style): build tokens_dir
                                                 # = units + their streams (trained when missing)
    dialogue_dir: str | None = None              # two-channel dialogues: tokens_dir is built from them
    dialogue_hours: float | None = None          # size of dialogue_dir when synthesized
                                                 # (None: corpus_hours)
    text_lm_dir: str = "work/text-lm"
    text_lm_steps: int = 400
    output_dir: str = "runs/run"
    # model
    preset: Literal["tiny", "small", "base"] = "tiny"
    hidden_size: int | None = None               # overrides of the preset (cold init only)
    num_layers: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    embed_init: Literal["mean", "random"] = "mean"
    # token streams (speechlm.lm.layout): which streams of the dataset, and how the model reads them
    streams: list[str] | None = None             # default: every stream of the dataset
    layout: Literal["flatten", "parallel", "delay", "coarse_first"] = "flatten"
    delays: list[int] | None = None              # delay layout: one per stream (default 0..K-1)
    stream_weights: list[float] | None = None    # loss weight per stream (default 1 each)
    depth_layers: int = 0                        # > 0: depth transformer over the rows of a step
    unread_streams: list[str] | None = None      # predicted, never read back as input: decided anew
                                                 # each step (a duplex state), not copied from its past
    # codec language models (speechlm.lm.codec): tokens_dir is then a codec token dataset
    codec_dir: str | None = None                 # the codec (tokens_dir is built with it when missing)
    tasks: list[str] | None = None               # CODEC_TASKS; several = one multitask model
    codebooks: int | None = None                 # the first n codebooks are modelled (default all)
    prompt_seconds: float = 3.0                  # TTS prompt crop in training (and the tts default)
    sample_temperature: list[float] | None = None  # default sampling temperature per stream
    sample_top_k: list[int] | None = None        # default top-k per stream (0: none); both are
                                                 # saved with the model for generation/evaluation
    # optimization
    max_steps: int = 300
    seed: int = 0
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    batch_size: int = 16                         # blocks per process per micro-step
    grad_accum: int = 1
    seq_len: int = 128
    clip_grad: float = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # auto: bf16 on GPU, fp32 on CPU
    attention: Literal["auto", "sdpa", "eager"] = "auto"  # HF attention kernel while training
    compile: bool = False
    threads: int | None = None                   # torch intra-op threads (None: torch default)
    # evaluation, logging, checkpoints
    log_every: int = 1
    eval_every: int = 50
    eval_blocks: int = 64
    keep_best: bool = True                       # keep best/ = model with the lowest valid loss
    final_model: Literal["best", "last"] = "last"   # what the run dir's model files are
    save_every: int = 100
    keep_last: int = 2
    tensorboard: bool = True
    progress: bool = True
    plot: bool = True

    def validate(self) -> list[str]:
        bad = []
        positive = ("max_steps", "batch_size", "grad_accum", "seq_len", "log_every", "eval_every",
                    "eval_blocks", "save_every", "keep_last", "tokenizer_units", "text_lm_steps")
        for key in positive:
            if getattr(self, key) < 1:
                bad.append(f"{key}={getattr(self, key)} must be >= 1")
        for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "threads"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                bad.append(f"{key}={getattr(self, key)} must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad.append(f"lr={self.lr} must be a positive number")
        if not 0 <= self.min_lr_ratio <= 1:
            bad.append(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.clip_grad < 0:
            bad.append("warmup_steps, weight_decay and clip_grad must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            bad.append(f"beta1={self.beta1}, beta2={self.beta2} must be in [0, 1)")
        if self.corpus_hours <= 0 or self.corpus_voices < 1:
            bad.append(f"corpus_hours={self.corpus_hours} must be > 0, corpus_voices >= 1")
        if self.dialogue_hours is not None and self.dialogue_hours <= 0:
            bad.append(f"dialogue_hours={self.dialogue_hours} must be > 0")
        if not self.output_dir:
            bad.append("output_dir must not be empty")
        if self.final_model == "best" and not self.keep_best:
            bad.append("final_model=best needs keep_best=true")
        if self.init == "warm" and self.kind == "text":
            bad.append("init=warm is for speech LMs (kind=speech)")
        bad += self._stream_problems()
        if self.prompt_seconds <= 0 or (self.codebooks is not None and self.codebooks < 1):
            bad.append(f"prompt_seconds={self.prompt_seconds} must be > 0, codebooks >= 1")
        if self.tasks is not None and (not self.tasks or set(self.tasks) - set(CODEC_TASKS)):
            bad.append(f"tasks={self.tasks} must be a non-empty list of {', '.join(CODEC_TASKS)}")
        return bad

    def _stream_problems(self) -> list[str]:
        bad = []
        if self.delays is not None and self.layout != "delay":
            bad.append(f"delays={list(self.delays)} needs layout=delay (layout={self.layout})")
        if self.delays is not None and min(self.delays, default=0) < 0:
            bad.append(f"delays={list(self.delays)} must be >= 0")
        if self.streams is not None and (not self.streams or self.streams[0] != "units"):
            bad.append(f"streams={list(self.streams)} must start with units")
        if self.stream_weights is not None and min(self.stream_weights, default=1) < 0:
            bad.append(f"stream_weights={list(self.stream_weights)} must be >= 0")
        if self.depth_layers < 0 or (self.depth_layers and self.layout == "flatten"):
            bad.append(f"depth_layers={self.depth_layers} must be >= 0, and needs a multi-row "
                       "layout (parallel, delay, coarse_first)")
        if self.unread_streams and (self.layout == "flatten" or self.streams is None or
                                    "units" in self.unread_streams or
                                    set(self.unread_streams) - set(self.streams)):
            bad.append(f"unread_streams={list(self.unread_streams)} must name streams of "
                       f"streams={self.streams} other than units, in a multi-row layout")
        building = [k for k in ("derive_streams", "prosody_tokenizers", "dialogue_dir")
                    if getattr(self, k)]
        if building and not self.tokens_dir:
            bad.append(f"{building[0]} needs tokens_dir (where the dataset goes)")
        if len(building) > 1:
            bad.append(f"{' and '.join(building)} are different ways to build tokens_dir: set one")
        bad += [f"prosody_tokenizers entry {e!r} must be KIND=DIR"
                for e in self.prosody_tokenizers or () if "=" not in e]
        for key in ("sample_temperature", "sample_top_k"):
            values = getattr(self, key)
            if values is not None and min(values, default=0) < 0:
                bad.append(f"{key}={list(values)} must be >= 0")
            if values is not None and self.streams is not None and len(values) != len(self.streams):
                bad.append(f"{key}={list(values)} needs one value per stream {list(self.streams)}")
        return bad
