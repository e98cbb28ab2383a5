"""Moshi-style full-duplex model: the system's and the user's streams in one multi-stream LM.

One causal backbone reads, per 20 ms frame, the system's units, a state token (VITA-style
query / non-query, LSLM-style interruption, speak), the user's units and optionally the system's
words letter by letter (Moshi's inner monologue), through the delay layout: the system's units
come one step after its state and text (Moshi's acoustic delay) and the user's units as late as
the streaming tokenizer's look-ahead needs (:mod:`speechlm.lm.duplex`). Listening is fused into
the speaking model: the user stream is an input row of the same model, and the state it predicts
gates the audio (only ``speak`` is voiced), so an ``interrupted`` token stops the output at once.
"""

from __future__ import annotations

from pathlib import Path

from speechlm.lm.config import TrainConfig
from speechlm.lm.duplex import STATE_STREAM, USER_STREAM, run_duplex


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    return run_duplex(cfg, "moshi", (USER_STREAM, STATE_STREAM), resume, source)
