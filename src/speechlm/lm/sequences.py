"""Sequence builders: token records -> training examples ``{input_ids, labels, loss_weights}``.

A builder turns one record (a ``(K, T)`` code array of a tokenized utterance) into an
:class:`Example` of ``(R, S)`` arrays: model ids, labels (``-100`` where a position is not scored;
by default labels equal the inputs) and optional per-position loss weights (per-stream weights,
as pGSLM weighs its unit, duration and F0 losses). Builders register by name and a recipe picks
one with ``sequence: NAME``; packing examples into fixed-length blocks
(:mod:`speechlm.lm.packing`) and the loss are the same for all of them.

:func:`utterance_tokens` is the one sequence-start convention: training examples and the prompts
and items that generation and scoring feed a model both go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

IGNORE = -100
FRAME = -2  # stream index of the framing specials (BOS/EOS) in builders


@dataclass(frozen=True)
class Example:
    """One training example; every array is (R, S)."""

    input_ids: np.ndarray                 # int64 model ids
    labels: np.ndarray                    # int64, IGNORE where the position is not a target
    loss_weights: np.ndarray | None = None  # float32, None = every target weighs 1


def sequence_frame(vocab: SpeechVocab, end: bool = True) -> tuple[list[int], list[int]]:
    """The one sequence convention: ids before and after an utterance's tokens. Every utterance
    starts with ``<bos>``, in training as in scoring and generation; training also ends it with
    ``<eos>`` (``end=True``), prompts and scored items leave the end open (``end=False``)."""
    return [vocab.bos_id], [vocab.eos_id] if end else []


def utterance_tokens(vocab: SpeechVocab, ids: np.ndarray, end: bool = True) -> np.ndarray:
    """Model ids ``(R, S)`` of one utterance framed by :func:`sequence_frame` (every row)."""
    ids = np.asarray(ids, dtype=np.int64)
    before, after = sequence_frame(vocab, end)
    column = lambda values: np.tile(np.asarray(values, dtype=np.int64), (ids.shape[0], 1))  # noqa: E731
    return np.concatenate([column(before), ids, column(after)], axis=1)


class SequenceBuilder:
    """Base class: ``example(codes, source)`` -> :class:`Example`. Subclasses register by name."""

    name = ""

    def __init__(self, space: TokenSpace, stream_weights: Sequence[float] | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        """``options`` (a recipe's ``sequence_options``) are for builders that declare keys;
        this one takes none."""
        if options:
            raise ConfigError(f"sequence={self.name!r} takes no sequence_options "
                              f"(got {sorted(options)})")
        self.space = space
        if stream_weights is not None and len(stream_weights) != space.n_streams:
            raise ConfigError(f"stream_weights={list(stream_weights)} needs one weight per stream "
                              f"{list(space.streams)}")
        self.stream_weights = None if stream_weights is None else \
            np.asarray(stream_weights, dtype=np.float32)

    def example(self, codes: np.ndarray, source: str) -> Example:
        raise NotImplementedError

    def examples(self, records: Sequence[np.ndarray], source: str) -> list[Example]:
        return [self.example(codes, f"{source}: row {i}") for i, codes in enumerate(records)]

    def weights(self, stream: np.ndarray) -> np.ndarray | None:
        """Per-position weights from the stream each position holds (1 for specials/padding)."""
        if self.stream_weights is None:
            return None
        out = np.ones(stream.shape, dtype=np.float32)
        out[stream >= 0] = self.stream_weights[stream[stream >= 0]]
        return out


BUILDERS: dict[str, type[SequenceBuilder]] = {}


def register_builder(name: str) -> Callable[[type[SequenceBuilder]], type[SequenceBuilder]]:
    """Class decorator: make a builder selectable with ``sequence: NAME`` in a recipe."""
    def decorate(cls: type[SequenceBuilder]) -> type[SequenceBuilder]:
        if name in BUILDERS:
            raise ConfigError(f"sequence builder {name!r} is already registered")
        cls.name = name
        BUILDERS[name] = cls
        return cls
    return decorate


def get_builder(name: str, space: TokenSpace, stream_weights: Sequence[float] | None = None,
                options: Mapping[str, Any] | None = None) -> SequenceBuilder:
    if name not in BUILDERS:
        raise ConfigError(f"sequence: {name!r} is not a registered builder ({sorted(BUILDERS)})")
    return BUILDERS[name](space, stream_weights, options)


@register_builder("pretrain")
class PretrainBuilder(SequenceBuilder):
    """Speech-only pretraining (GSLM, TWIST): every utterance framed by :func:`utterance_tokens`,
    labels = inputs except positions that hold no code (delay padding)."""

    def example(self, codes: np.ndarray, source: str) -> Example:
        ids, stream = self.space.encode(codes, source)               # (R, S)
        before, after = sequence_frame(self.space.vocab)
        rows = ids.shape[0]
        ids = utterance_tokens(self.space.vocab, ids)
        # the framing specials are targets too; positions without a code (-1) are not
        stream = np.concatenate([np.full((rows, len(before)), FRAME), stream,
                                 np.full((rows, len(after)), FRAME)], axis=1)
        labels = np.where(stream != -1, ids, IGNORE)
        return Example(ids, labels, self.weights(stream))
