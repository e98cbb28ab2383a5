"""Full-duplex models: which stream is whose, and what a model must record to run in real time.

A duplex model (recipes ``duplex-tiny`` and ``dgslm-tiny``) reads frame-synchronous streams of a
dialogue token dataset (:mod:`speechlm.tokenizers.dialogue`): ``units`` (what the system says),
``user`` (what it hears; fed at inference, never sampled) and optionally ``state`` (VITA query /
non-query and LSLM interruption tokens) and ``chars`` (Moshi's inner monologue).

Real time fixes the delays. The streaming tokenizer fixes a user frame ``lookahead`` frames after
it arrived, and at the end of real frame ``t`` the system must say frame ``t``. With the delay
layout, step ``s`` holds frame ``s - delays[k]`` of stream ``k``, and the rows of step ``s`` are
predicted from steps ``< s``. So system frame ``t`` (step ``t + d_units``) sees user frames up to
``t + d_units - 1 - d_user``, which are known at real time ``t`` when
``lookahead = d_user - d_units`` (>= 1). :class:`DuplexInfo` records this in ``speechlm.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.lm.config import TrainConfig
from speechlm.lm.layout import get_layout

SYSTEM_STREAM, USER_STREAM, STATE_STREAM, TEXT_STREAM = "units", "user", "state", "chars"


@dataclass(frozen=True)
class DuplexInfo:
    """What ``speechlm.json["duplex"]`` holds."""

    variant: str                      # "moshi" (duplex-tiny) or "dgslm"
    lookahead: int                    # user frames the streaming tokenizer waits for
    silence_unit: int                 # the system stream's code for "not speaking"
    states: tuple[str, ...]           # labels of the state stream's codes
    has_state: bool
    has_text: bool
    frame_rate: float

    def to_dict(self) -> dict:
        return {**asdict(self), "states": list(self.states)}

    @classmethod
    def from_meta(cls, extra: dict, source: str) -> DuplexInfo:
        try:
            d = extra["duplex"]
            return cls(str(d["variant"]), int(d["lookahead"]), int(d["silence_unit"]),
                       tuple(d["states"]), bool(d["has_state"]), bool(d["has_text"]),
                       float(d["frame_rate"]))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: corrupt duplex metadata ({type(err).__name__}: {err})") \
                from None


def is_duplex(lm) -> bool:
    """Whether a loaded :class:`~speechlm.lm.model.SpeechLM` is a duplex model."""
    return "duplex" in lm.spec.extra


def user_lookahead(cfg: TrainConfig) -> int:
    """The streaming tokenizer's look-ahead that ``cfg``'s delays allow (module docstring)."""
    streams = list(cfg.streams or [])
    if USER_STREAM not in streams:
        raise ConfigError(f"streams={streams}: a dialogue model needs the {USER_STREAM!r} stream "
                          f"(what it hears)")
    delays = get_layout("delay", len(streams), cfg.delays).delays
    return delays[streams.index(USER_STREAM)] - delays[0]


def check_duplex_config(cfg: TrainConfig, required: Sequence[str], source: str) -> int:
    """ConfigError unless ``cfg`` reads a dialogue dataset through a real-time delay layout with
    the ``required`` streams; returns the tokenizer look-ahead the delays allow."""
    streams = list(cfg.streams or [])
    bad = []
    if not cfg.dialogue_dir or not cfg.tokens_dir:
        bad.append("needs dialogue_dir and tokens_dir (the frame-level dialogue streams)")
    missing = [s for s in required if s not in streams]
    if missing or not streams or streams[0] != SYSTEM_STREAM:
        bad.append(f"streams={streams} must start with {SYSTEM_STREAM} and include {list(required)}")
    if cfg.layout != "delay":
        bad.append(f"layout={cfg.layout}: a real-time duplex model needs layout=delay")
    if bad:
        raise ConfigError(f"{source}: {'; '.join(bad)}")
    delays = get_layout("delay", len(streams), cfg.delays).delays
    lookahead = user_lookahead(cfg)
    if lookahead < 1:
        raise ConfigError(f"{source}: delays={list(delays)}: the user stream must be delayed at "
                          f"least one step more than {SYSTEM_STREAM} (the streaming tokenizer "
                          f"needs a look-ahead of >= 1 frame; it gets d_user - d_units = "
                          f"{lookahead})")
    if STATE_STREAM in streams and delays[streams.index(STATE_STREAM)] > delays[0]:
        raise ConfigError(f"{source}: delays={list(delays)}: the state of a frame gates its audio, "
                          f"so it cannot come later than the frame's units")
    return lookahead


def run_duplex(cfg: TrainConfig, variant: str, required: Sequence[str], resume: bool,
               source: str) -> Path:
    """Train with the generic pretrain recipe and record :class:`DuplexInfo` in the model dir."""
    from speechlm.lm.recipes import pretrain
    from speechlm.tokenizers.tokens import TokenDataset

    lookahead = check_duplex_config(cfg, required, source)
    dataset = TokenDataset(cfg.tokens_dir)
    if dataset.meta.get("kind") != "dialogue":
        raise ConfigError(f"{source}: tokens_dir={cfg.tokens_dir} is not a dialogue token dataset "
                          f"(build it from dialogue_dir; delete it to rebuild)")
    heard = dataset.meta.get("user_lookahead")
    if heard != lookahead:
        held = "offline units (an older dataset)" if heard is None else \
            f"the user channel as heard with look-ahead {heard}"
        raise ConfigError(f"{source}: tokens_dir={cfg.tokens_dir} holds {held}, but "
                          f"delays={list(cfg.delays or [])} give the model look-ahead {lookahead} "
                          f"(delete tokens_dir to rebuild it)")
    streams = list(cfg.streams)
    info = DuplexInfo(variant, lookahead, int(dataset.meta["silence_unit"]),
                      tuple(dataset.meta["states"]), STATE_STREAM in streams,
                      TEXT_STREAM in streams, dataset.frame_rate)
    return pretrain.run(cfg, resume=resume, source=source,
                        meta_extra={"duplex": info.to_dict(),
                                    "dialogue_dir": str(Path(cfg.dialogue_dir).resolve())})
