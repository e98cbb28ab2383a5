"""The model-directory contract: ``speechlm.json``, written and read only here, and the tokenizer
resolver that generation, evaluation and serving share.

A model directory holds the HF files (``config.json``, ``model.safetensors``), the token space
(``speech_vocab.json``) and ``speechlm.json``::

    {"format": "speechlm-model", "version": 2,
     "kind": "speech" | "text",
     "streams": [{"family": "units", "tokenizer_dir": "/abs/tok", "frame_rate": 50.0}, ...],
     "layout": "flatten", "delays": null,       # how the K streams become model rows
     "prefix": [],                              # conditioning families before the codes (row 0)
     "seq_len": 128, "sequence": "pretrain",    # training block length and sequence builder
     "init": "cold", "recipe": "gslm-tiny",
     "tokenizer_dir": "/abs/tok",               # = streams[0].tokenizer_dir, for older readers
     ...provenance (units_dir, text_lm_dir, ...)}

Version-1 files (kind, tokenizer_dir and provenance, one ``units`` or ``text`` stream) still load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from speechlm.core.errors import CheckpointError
from speechlm.core.files import atomic_write_json, read_json
from speechlm.lm.layout import LAYOUTS, get_layout
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)

META_FILE = "speechlm.json"
FORMAT = "speechlm-model"
VERSION = 2
_KEYS = ("kind", "streams", "layout", "delays", "seq_len", "sequence", "init", "recipe", "prefix")


@dataclass(frozen=True)
class StreamInfo:
    """One token stream: its family in ``speech_vocab.json`` and where its codes come from."""

    family: str
    tokenizer_dir: str | None = None
    frame_rate: float | None = None


@dataclass(frozen=True)
class ModelMeta:
    """What a model directory records besides weights and vocabulary."""

    kind: str                                   # "speech" or "text"
    streams: tuple[StreamInfo, ...]
    layout: str = "flatten"
    delays: tuple[int, ...] | None = None
    seq_len: int | None = None
    sequence: str = "pretrain"
    init: str | None = None
    recipe: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # provenance, free-form
    prefix: tuple[str, ...] = ()                # conditioning families before the codes (row 0)

    @classmethod
    def single(cls, kind: str, tokenizer_dir: str | None = None, **extra: Any) -> ModelMeta:
        """A one-stream model: ``units`` for speech LMs, ``text`` for text LMs."""
        known = {k: extra.pop(k) for k in ("seq_len", "sequence", "init", "recipe", "frame_rate")
                 if k in extra}
        stream = StreamInfo("units" if kind == "speech" else "text", tokenizer_dir,
                            known.pop("frame_rate", None))
        return cls(kind, (stream,), extra=extra, **known)

    @property
    def tokenizer_dir(self) -> str | None:
        """The speech tokenizer of the first stream (the units every speech model reads)."""
        return self.streams[0].tokenizer_dir if self.kind == "speech" else None

    def space(self, vocab: SpeechVocab) -> TokenSpace:
        layout = get_layout(self.layout, len(self.streams), self.delays)
        return TokenSpace(vocab, tuple(s.family for s in self.streams), layout, self.prefix)

    def with_extra(self, **extra: Any) -> ModelMeta:
        return replace(self, extra={**self.extra, **extra})

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **self.extra, "kind": self.kind,
                "tokenizer_dir": self.tokenizer_dir,
                "streams": [{"family": s.family, "tokenizer_dir": s.tokenizer_dir,
                             "frame_rate": s.frame_rate} for s in self.streams],
                "layout": self.layout, "delays": list(self.delays) if self.delays else None,
                "seq_len": self.seq_len, "sequence": self.sequence, "init": self.init,
                "recipe": self.recipe, "prefix": list(self.prefix)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = META_FILE) -> ModelMeta:
        """Parse (version 1 or 2); CheckpointError naming ``source`` on a bad field."""
        if d.get("kind") not in ("speech", "text"):
            raise CheckpointError(f"{source}: kind must be 'speech' or 'text', got {d.get('kind')!r}")
        extra = {k: v for k, v in d.items()
                 if k not in (*_KEYS, "format", "version", "tokenizer_dir")}
        try:
            if "streams" not in d:  # version 1: one stream, provenance at the top level
                return cls.single(d["kind"], d.get("tokenizer_dir"), **{
                    k: d[k] for k in ("seq_len", "init", "recipe") if d.get(k) is not None}, **extra)
            streams = tuple(StreamInfo(str(s["family"]), s.get("tokenizer_dir"), s.get("frame_rate"))
                            for s in d["streams"])
            meta = cls(d["kind"], streams, str(d.get("layout") or "flatten"),
                       tuple(int(x) for x in d["delays"]) if d.get("delays") else None,
                       int(d["seq_len"]) if d.get("seq_len") else None,
                       str(d.get("sequence") or "pretrain"), d.get("init"), d.get("recipe"), extra,
                       tuple(str(p) for p in d.get("prefix") or ()))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: corrupt model metadata ({type(err).__name__}: {err})") from None
        if not meta.streams or meta.layout not in LAYOUTS:
            raise CheckpointError(f"{source}: needs at least one stream and a layout in {list(LAYOUTS)}")
        return meta


def write_meta(model_dir: str | Path, meta: ModelMeta) -> Path:
    return atomic_write_json(Path(model_dir) / META_FILE, meta.to_dict())


def read_meta(model_dir: str | Path) -> ModelMeta:
    path = Path(model_dir) / META_FILE
    data = read_json(path, CheckpointError, "missing (not a speechlm model directory)")
    return ModelMeta.from_dict(data, str(path))


def resolve_tokenizer(lm: Any, model_dir: str | Path, tokenizer_dir: str | None = None):
    """The speech tokenizer for speech LM ``lm`` (``tokenizer_dir``, else the one the model
    records) after checking that it makes the LM's units; returns ``(tokenizer, path)``.

    One resolver for generation, evaluation and serving, so a mismatch fails the same way
    everywhere, before any work.
    """
    from speechlm.tokenizers import load_tokenizer

    path = tokenizer_dir or lm.tokenizer_dir
    if not path:
        raise CheckpointError(f"{model_dir}: the model records no speech tokenizer; pass "
                              "--tokenizer DIR")
    if not Path(path).is_dir():
        raise CheckpointError(f"{path}: speech tokenizer directory not found"
                              + ("" if tokenizer_dir else f" (recorded in {model_dir})"))
    tokenizer = load_tokenizer(path)
    check_units(lm, tokenizer.vocab_size, model_dir, path)
    if tokenizer_dir and lm.tokenizer_dir and Path(tokenizer_dir).resolve() != \
            Path(lm.tokenizer_dir).resolve():
        log.warning("%s was trained with tokenizer %s but --tokenizer is %s", model_dir,
                    lm.tokenizer_dir, tokenizer_dir)
    return tokenizer, str(path)


def check_units(lm: Any, n_units: int, model_dir: str | Path, other_dir: str | Path,
                what: str = "tokenizer") -> None:
    """CheckpointError when the ``what`` at ``other_dir`` (a tokenizer that makes, or a vocoder
    that reads, ``n_units`` units) does not match the units ``lm`` reads."""
    vocab = lm.vocab
    have = int(vocab.family("units").size) if hasattr(vocab, "family") else int(vocab.n_units)
    if int(n_units) != have:
        verb = "produces" if what == "tokenizer" else "reads"
        raise CheckpointError(
            f"model/{what} mismatch: {model_dir} has {have} speech units but {what} {other_dir} "
            f"{verb} {n_units}; use the {what} the model was trained with")
