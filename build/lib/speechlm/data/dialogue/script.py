"""What each dialogue says and who says it, decided up front from one seeded generator.

A :class:`DialogueScript` fixes the text, voices, split and the scripted events (non-query audio
before an exchange, an interruption in it); timing, pauses, overlaps and backchannels depend on
the synthesized durations and are decided by the worker from ``script.seed`` (see layout.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from speechlm.data.dialogue.config import NOISE_LEVELS, DialogueConfig
from speechlm.data.dialogue.text import GROUP_OF_SPLIT, TextPool
from speechlm.data.synth import jittered, speaker_id
from speechlm.data.tts import Voice

INTERJECTIONS = ("Wait,", "Sorry,", "Hold on,", "Actually,", "Excuse me,")
NON_QUERY_KINDS = ("noise", "third_voice", "side_talk")
T = TypeVar("T")


@dataclass(frozen=True)
class NonQuery:
    """``label`` is a noise level, ``third_voice`` (one line) or ``side_talk`` (user + other)."""

    label: str
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exchange:
    question: str
    answer: str
    non_query: NonQuery | None = None           # before the question
    interruption: tuple[str, str] | None = None  # the user's barge-in question and its answer


@dataclass(frozen=True)
class DialogueScript:
    id: str
    split: str
    seed: int
    voices: tuple[Voice, Voice]      # (user, system), prosody jittered for this dialogue
    speakers: tuple[str, str]
    other: Voice                     # the third voice of non-query audio
    other_speaker: str
    exchanges: tuple[Exchange, ...]

    def voice(self, channel: int) -> Voice:
        return self.voices[channel]


def pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    """One item, uniformly (``rng.choice`` would turn tuples of strings into numpy arrays)."""
    return items[int(rng.integers(len(items)))]


def split_for(k: int, config: DialogueConfig) -> str:
    """The split of the k-th train-voice dialogue: valid and test spread evenly through them."""
    def hit(fraction: float, phase: float) -> bool:
        return int((k + 1) * fraction + phase) > int(k * fraction + phase)
    return "valid" if hit(config.valid_fraction, 0.0) else \
        "test" if hit(config.test_fraction, 0.5) else "train"


def _interjected(question: str, rng: np.random.Generator) -> str:
    keep = question.startswith(("I ", "I'"))
    return f"{pick(rng, INTERJECTIONS)} " \
           f"{question if keep else question[0].lower() + question[1:]}"


def _exchange(pool: TextPool, config: DialogueConfig, rng: np.random.Generator) -> Exchange:
    pair = pick(rng, pool.pairs)
    non_query = None
    if rng.random() < config.non_query_prob:
        kind = pick(rng, NON_QUERY_KINDS)
        if kind == "noise":
            non_query = NonQuery(pick(rng, NOISE_LEVELS))
        elif kind == "third_voice":
            non_query = NonQuery(kind, (pick(rng, pool.lines),))
        else:
            non_query = NonQuery(kind, pick(rng, pool.conversations))
    interruption = None
    if rng.random() < config.interruption_prob:
        other = pick(rng, pool.pairs)
        interruption = (_interjected(other.question, rng), other.answer)
    return Exchange(pair.question, pair.answer, non_query, interruption)


def plan_dialogues(pools: dict[str, TextPool], train: list[Voice], heldout: list[Voice],
                   config: DialogueConfig, seed: int) -> Iterator[DialogueScript]:
    """An endless, seeded stream of scripts. The user voice cycles through all voices (so the
    heldout share is heldout / all voices); the system and third voices come from the same
    pool as the user's, so heldout dialogues contain no training voice."""
    rng = np.random.default_rng(seed + 1)
    # interleave the two pools evenly (train first), so short corpora get both kinds
    users = sorted([((j + 0.5) / len(train), 0, v, False) for j, v in enumerate(train)] +
                   [((j + 0.5) / len(heldout), 1, v, True) for j, v in enumerate(heldout)])
    users = [(v, is_heldout) for _, _, v, is_heldout in users]
    n_train = 0
    for i in itertools.count():
        user, is_heldout = users[i % len(users)]
        pool_voices = heldout if is_heldout else train
        if is_heldout:
            split = "heldout"
        else:
            split, n_train = split_for(n_train, config), n_train + 1
        others = [v for v in pool_voices if v != user]
        picks = rng.permutation(len(others))[:2]
        system, other = others[picks[0]], others[picks[1]]
        lo, hi = config.exchanges
        pool = pools[GROUP_OF_SPLIT[split]]
        n_exchanges = int(rng.integers(lo, hi + 1))
        exchanges = tuple(_exchange(pool, config, rng) for _ in range(n_exchanges))
        voices = (jittered(user, rng), jittered(system, rng))
        yield DialogueScript(f"dialogue-{i:06d}", split, seed * 1_000_003 + i, voices,
                             (speaker_id(user), speaker_id(system)), jittered(other, rng),
                             speaker_id(other), exchanges)

