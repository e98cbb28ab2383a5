"""Precision and attention-kernel choices of the training loop, resolved per machine.

``precision: auto`` is bf16 autocast on GPU and fp32 on CPU (CPU results do not depend on the CPU
model); ``attention: auto`` picks HF's math kernel for short blocks under CPU bf16. What ``auto``
became is written into the run's ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import torch

from speechlm.lm.config import TrainConfig

log = logging.getLogger(__name__)


def native_bf16() -> bool:
    """Whether this machine multiplies bf16 in hardware: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX (elsewhere torch emulates bf16 on CPU, slower than fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(cfg: TrainConfig) -> Literal["fp32", "bf16"]:
    """``auto``: bf16 autocast on GPU; fp32 on CPU, so CPU results do not depend on the CPU model."""
    if cfg.precision == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    if cfg.precision == "bf16" and not native_bf16():
        log.warning("%s: precision=bf16 but this machine has no native bf16 (no AVX512-BF16/AMX "
                    "CPU or bf16 GPU): it is emulated and likely slower than fp32", cfg.name)
    return cfg.precision


# Longest block for which CPU bf16 training uses HF's math ("eager") attention. Measured here
# (benchmarks/train_throughput.py, "attention_kernels" in its JSON; one layer, forward + backward):
# torch's CPU flash kernel, which HF's default "sdpa" reaches, takes 3.3-3.4x the time of HF's
# math kernel in bf16 at 128 tokens and 1.6-1.7x at 256; at 512 the two are about even (0.95-1.36
# across runs), at 1024 the flash kernel wins, and in fp32 it is never slower.
CPU_BF16_EAGER_MAX_LEN = 256


def resolve_attention(cfg: TrainConfig, precision: str) -> Literal["sdpa", "eager"]:
    """The HF attention implementation to train with (``attention: auto`` picks by the rule above)."""
    if cfg.attention != "auto":
        return cfg.attention
    cpu_bf16 = precision == "bf16" and not torch.cuda.is_available()
    return "eager" if cpu_bf16 and cfg.seq_len <= CPU_BF16_EAGER_MAX_LEN else "sdpa"


@contextlib.contextmanager
def attention_implementation(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Train with attention kernel ``name``; the model gets its own back after (not saved in
    config.json either way, so checkpoints load with the default kernel)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
