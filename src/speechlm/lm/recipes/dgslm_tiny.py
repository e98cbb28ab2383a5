"""dGSLM-style dialogue LM: both channels' units modelled jointly, no text, no state tokens.

dGSLM (Nguyen et al. 2022) runs two transformer towers, one per channel, joined by
cross-attention, and predicts both channels' units. Here one backbone reads both channels (their
embeddings summed per frame) and predicts both with equal weight: the same information flow in
one tower, at half the parameters and compute of two towers. Its units are frame-level rather
than deduplicated, so dGSLM's edge-unit prediction and delayed duration loss have nothing to act
on and are not used. Silence is a unit like any other: the system is quiet when it says the
silence unit (:mod:`speechlm.tokenizers.dialogue`). The user stream is delayed by the streaming
tokenizer's look-ahead (:mod:`speechlm.lm.duplex`).
"""

from __future__ import annotations

from pathlib import Path

from speechlm.lm.config import TrainConfig
from speechlm.lm.duplex import USER_STREAM, run_duplex


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    return run_duplex(cfg, "dgslm", (USER_STREAM,), resume, source)
