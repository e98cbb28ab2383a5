"""Sequence builders of joint speech–text LMs (SUTLM's four modes, SpiRit-LM's mixture).

Each builds one example from an :class:`~.tokens.AlignedUtterance` and a seeded generator (the
random choices are redrawn every epoch by :class:`~.packing.EpochExamples`):

* ``speech``: ``<bos> [SPEECH] units <eos>``; ``text``: ``<bos> [TEXT] words <eos>``;
* ``concat`` (SUTLM's CST): the utterance's speech then its transcript, or the transcript then
  its speech; ``order: both`` (default) draws the order per example;
* ``interleave`` (SUTLM's AST, SpiRit-LM): the words cut into spans of ``span_words: [min, max]``
  words; each span is spoken with probability ``speech_share`` and written otherwise, so spans
  switch modality at word boundaries and a marker is written only where the modality changes;
* ``mix``: per example one of the builders above, with ``weights`` (SpiRit-LM: a third each of
  speech, text and interleave).

Loss mask: every position is a target by default; ``loss_on: [text]`` (or ``[speech]``) scores
only that modality's tokens and their markers (plus ``<eos>``), e.g. ASR-like training on concat.
Options come from the recipe's ``sequence_options`` and unknown keys fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.lm.interleave.tokens import SPEECH, TEXT, AlignedUtterance, Segment, segments_to_ids
from speechlm.lm.sequences import IGNORE, Example, SequenceBuilder, register_builder
from speechlm.lm.streams import TokenSpace


class JointBuilder(SequenceBuilder):
    """Base of the joint builders: options checked up front, ``segments(utt, rng)`` per mode."""

    defaults: dict[str, Any] = {}

    def __init__(self, space: TokenSpace, stream_weights: Sequence[float] | None = None,
                 options: Mapping[str, Any] | None = None) -> None:
        if stream_weights is not None:
            raise ConfigError(f"sequence={self.name!r} has one stream; stream_weights is not used")
        allowed = {"loss_on", *self.defaults}
        unknown = sorted(set(options or {}) - allowed)
        if unknown:
            raise ConfigError(f"sequence_options: unknown key(s) {unknown} for sequence="
                              f"{self.name!r} (valid: {sorted(allowed)})")
        super().__init__(space)
        self.options = {**self.defaults, **(options or {})}
        self.loss_on = tuple(self.options.get("loss_on") or (SPEECH, TEXT))
        if not set(self.loss_on) <= {SPEECH, TEXT} or not self.loss_on:
            raise ConfigError(f"sequence_options.loss_on={list(self.loss_on)} must be a non-empty "
                              f"subset of ['speech', 'text']")
        self.check()

    def check(self) -> None:
        """Validate mode-specific options (ConfigError naming the key)."""

    def segments(self, utt: AlignedUtterance, rng: np.random.Generator) -> list[Segment]:
        raise NotImplementedError

    def example(self, utt: AlignedUtterance, rng: np.random.Generator) -> Example:  # type: ignore[override]
        ids, roles = segments_to_ids(self.space.vocab, self.segments(utt, rng))
        scored = [r in ("bos", "eos") or r.removeprefix("marker:") in self.loss_on for r in roles]
        ids_arr = np.asarray([ids], dtype=np.int64)                        # (1, S)
        labels = np.where(np.asarray([scored]), ids_arr, IGNORE)
        return Example(ids_arr, labels)

    def examples(self, records: Sequence[np.ndarray], source: str) -> list[Example]:
        raise ConfigError(f"{source}: sequence={self.name!r} builds from word-aligned utterances, "
                          "not unit arrays; train it with recipe: sutlm")

    def draw(self, utts: Sequence[AlignedUtterance], seed: int, epoch: int) -> list[Example]:
        """One example per utterance; example ``i`` of ``epoch`` uses generator ``(seed, epoch, i)``."""
        return [self.example(u, np.random.default_rng([seed, epoch, i])) for i, u in enumerate(utts)]


def _whole(modality: str, utt: AlignedUtterance) -> Segment:
    n = len(utt.words)
    return Segment(modality, utt.speech(0, n) if modality == SPEECH else utt.text(0, n))


@register_builder("speech")
class SpeechBuilder(JointBuilder):
    def segments(self, utt: AlignedUtterance, rng: np.random.Generator) -> list[Segment]:
        return [_whole(SPEECH, utt)]


@register_builder("text")
class TextBuilder(JointBuilder):
    def segments(self, utt: AlignedUtterance, rng: np.random.Generator) -> list[Segment]:
        return [_whole(TEXT, utt)]


@register_builder("concat")
class ConcatBuilder(JointBuilder):
    defaults = {"order": "both"}
    ORDERS = {"speech_first": (SPEECH, TEXT), "text_first": (TEXT, SPEECH)}

    def check(self) -> None:
        if self.options["order"] not in (*self.ORDERS, "both"):
            raise ConfigError(f"sequence_options.order={self.options['order']!r} must be "
                              f"speech_first, text_first or both")

    def segments(self, utt: AlignedUtterance, rng: np.random.Generator) -> list[Segment]:
        order = self.options["order"]
        if order == "both":
            order = "speech_first" if rng.random() < 0.5 else "text_first"
        return [_whole(m, utt) for m in self.ORDERS[order]]


@register_builder("interleave")
class InterleaveBuilder(JointBuilder):
    defaults = {"speech_share": 0.5, "span_words": [1, 5]}

    def check(self) -> None:
        share, span = self.options["speech_share"], list(self.options["span_words"])
        if not 0 <= float(share) <= 1:
            raise ConfigError(f"sequence_options.speech_share={share} must be in [0, 1]")
        if len(span) != 2 or not 1 <= int(span[0]) <= int(span[1]):
            raise ConfigError(f"sequence_options.span_words={span} must be [min, max] with "
                              "1 <= min <= max")

    def spans(self, n_words: int, rng: np.random.Generator) -> list[tuple[int, int, str]]:
        """``(first, stop, modality)`` spans covering words ``0..n_words-1`` in order."""
        low, high = (int(x) for x in self.options["span_words"])
        out, first = [], 0
        while first < n_words:
            stop = min(n_words, first + int(rng.integers(low, high + 1)))
            out.append((first, stop, SPEECH if rng.random() < float(self.options["speech_share"])
                        else TEXT))
            first = stop
        return out

    def segments(self, utt: AlignedUtterance, rng: np.random.Generator) -> list[Segment]:
        return [Segment(m, utt.speech(a, b) if m == SPEECH else utt.text(a, b))
                for a, b, m in self.spans(len(utt.words), rng)]


@register_builder("mix")
class MixBuilder(JointBuilder):
    """Per example one mode, drawn with ``weights``; ``options`` of the modes are passed on."""

    defaults = {"weights": {"speech": 1.0, "text": 1.0, "interleave": 1.0},
                **ConcatBuilder.defaults, **InterleaveBuilder.defaults}
    MODES = {"speech": SpeechBuilder, "text": TextBuilder, "concat": ConcatBuilder,
             "interleave": InterleaveBuilder}

    def check(self) -> None:
        weights = dict(self.options["weights"])
        if not weights or set(weights) - set(self.MODES) or min(weights.values()) < 0 \
                or sum(weights.values()) <= 0:
            raise ConfigError(f"sequence_options.weights={weights} must map some of "
                              f"{sorted(self.MODES)} to weights >= 0 with a positive sum")
        self.modes = []
        for name in weights:
            cls = self.MODES[name]
            keys = {"loss_on", *cls.defaults}
            self.modes.append(cls(self.space, None, {k: v for k, v in self.options.items()
                                                     if k in keys}))
        total = sum(weights.values())
        self.probs = np.asarray([w / total for w in weights.values()])

    def segments(self, utt: AlignedUtterance, rng: np.random.Generator) -> list[Segment]:
        return self.modes[int(rng.choice(len(self.modes), p=self.probs))].segments(utt, rng)
