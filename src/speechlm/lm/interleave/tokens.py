"""The joint token space of speech–text LMs and the one place segments become model ids.

Vocabulary (appended to the shared specials, ids never move)::

    specials (4) | units (K) | text (BPE of the text LM) | modality ([TEXT], [SPEECH])

A sequence is ``<bos>`` then modality segments, each opened by its marker, then ``<eos>``:
``<bos> [TEXT] the cat [SPEECH] u17 u3 u3 ... [TEXT] on the mat <eos>``. A marker is written only
where the modality changes: consecutive segments of one modality merge (a duplicated marker was
a reported SpiRit-LM bug). :func:`segments_to_ids` writes this format and :func:`ids_to_segments`
reads it back; training builders, scoring and generation prompts all go through them.

Text is the word labels of the alignment, each word BPE-encoded on its own (byte-level BPE with a
prefix space: ``" word"``), so a word's ids do not depend on where a span starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechlm.core.errors import CheckpointError, DataError
from speechlm.lm.vocab import SpeechVocab

MODALITY = "modality"
TEXT, SPEECH = "text", "speech"
MARKERS = {TEXT: "[TEXT]", SPEECH: "[SPEECH]"}
FAMILY = {TEXT: "text", SPEECH: "units"}           # vocabulary family of each modality
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def text_words(text: str) -> list[str]:
    """Words as the corpus alignment labels them (letters, digits, apostrophes; no punctuation)."""
    return _WORD.findall(text)


def joint_vocab(units_vocab: SpeechVocab, text_vocab: SpeechVocab) -> SpeechVocab:
    """``units_vocab`` (specials + units) + the text LM's ``text`` family + the two markers."""
    text = text_vocab.family("text")
    return (units_vocab.add_family("text", text.size, kind="text", **text.meta)
            .add_family(MODALITY, 2, kind="marker", labels=(MARKERS[TEXT], MARKERS[SPEECH])))


def is_joint(vocab: SpeechVocab) -> bool:
    return vocab.has("units") and vocab.has("text") and vocab.has(MODALITY)


def marker_id(vocab: SpeechVocab, modality: str) -> int:
    fam = vocab.family(MODALITY)
    return fam.offset + fam.labels.index(MARKERS[modality])


def family_range(vocab: SpeechVocab, modality: str) -> tuple[int, int]:
    """``[start, stop)`` of the ids a modality's tokens take."""
    fam = vocab.family(FAMILY[modality])
    return fam.offset, fam.offset + fam.size


@dataclass(frozen=True)
class Segment:
    """Tokens of one modality, as family-local ids (unit indices or BPE ids)."""

    modality: str
    tokens: tuple[int, ...]


def merge(segments: Sequence[Segment]) -> list[Segment]:
    """Consecutive segments of one modality joined; empty ones dropped."""
    out: list[Segment] = []
    for seg in segments:
        if not seg.tokens:
            continue
        if out and out[-1].modality == seg.modality:
            out[-1] = Segment(seg.modality, out[-1].tokens + seg.tokens)
        else:
            out.append(seg)
    return out


def segments_to_ids(vocab: SpeechVocab, segments: Sequence[Segment], start: bool = True,
                    end: bool = True) -> tuple[list[int], list[str]]:
    """Model ids of ``segments`` (``<bos>`` first when ``start``, ``<eos>`` last when ``end``) and
    the role of each position: ``bos``, ``eos``, ``marker:<modality>`` or the modality."""
    ids, roles = ([vocab.bos_id], ["bos"]) if start else ([], [])
    for seg in merge(segments):
        ids.append(marker_id(vocab, seg.modality))
        roles.append(f"marker:{seg.modality}")
        ids += vocab.encode(FAMILY[seg.modality], seg.tokens)
        roles += [seg.modality] * len(seg.tokens)
    if end:
        ids.append(vocab.eos_id)
        roles.append("eos")
    return ids, roles


def ids_to_segments(vocab: SpeechVocab, ids: Sequence[int]) -> list[Segment]:
    """The inverse of :func:`segments_to_ids` (specials skipped). DataError when a token appears
    before any marker or in a segment of the other modality."""
    markers = {marker_id(vocab, m): m for m in MARKERS}
    out: list[Segment] = []
    for i in ids:
        i = int(i)
        if i in markers:
            out.append(Segment(markers[i], ()))
        elif vocab.family_of(i) == "specials":
            continue
        else:
            if not out or vocab.family_of(i) != FAMILY[out[-1].modality]:
                raise DataError(f"token {i} ({vocab.family_of(i)}) is outside a "
                                f"{out[-1].modality if out else 'marked'} segment")
            local = vocab.decode(FAMILY[out[-1].modality], [i])[0]
            out[-1] = Segment(out[-1].modality, out[-1].tokens + (local,))
    return out


@dataclass(frozen=True)
class AlignedUtterance:
    """One utterance with its words aligned to units: word ``j`` is spoken by
    ``units[cuts[j]:cuts[j + 1]]`` and written as BPE ids ``word_ids[j]``."""

    id: str
    units: tuple[int, ...]
    words: tuple[str, ...]
    word_ids: tuple[tuple[int, ...], ...]
    cuts: tuple[int, ...]                       # len(words) + 1, cuts[0] = 0, cuts[-1] = len(units)

    def speech(self, first: int, stop: int) -> tuple[int, ...]:
        """Units of words ``first..stop-1`` (with the silence before the next word)."""
        return self.units[self.cuts[first]:self.cuts[stop]]

    def text(self, first: int, stop: int) -> tuple[int, ...]:
        return tuple(i for ids in self.word_ids[first:stop] for i in ids)


def unit_cuts(durations: np.ndarray, word_starts: Sequence[int]) -> list[int]:
    """Per word, the index of its first unit: units whose centre frame lies before the word's
    start frame belong to earlier words (deduplicated units span several frames)."""
    ends = np.cumsum(durations)
    centres = ends - np.asarray(durations) / 2
    cuts = [0] + [int(np.searchsorted(centres, start, side="left")) for start in word_starts[1:]]
    return cuts + [len(durations)]


def align(rec, encode_word) -> AlignedUtterance:
    """A :class:`~speechlm.tokenizers.tokens.TokenRecord` as an :class:`AlignedUtterance`;
    ``encode_word(word) -> BPE ids``. DataError when it has units but no word alignment."""
    if not rec.words:
        raise DataError(f"utterance {rec.id!r} has no word alignment (joint speech–text builders "
                        "need the corpus' word timings)")
    words = tuple(w for w, _, _ in rec.words)
    cuts = unit_cuts(np.asarray(rec.durations), [s for _, s, _ in rec.words])
    return AlignedUtterance(rec.id, tuple(int(u) for u in rec.units), words,
                            tuple(tuple(encode_word(w)) for w in words), tuple(cuts))


def load_bpe(model_dir: str | Path):
    """The text LM's BPE tokenizer (``tokenizer.json`` of a model directory)."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; joint speech–text models need the text LM's BPE "
                              "tokenizer (train one with `speechlm text-lm train`)")
    return Tokenizer.from_file(str(path))


def word_encoder(bpe):
    """``word -> BPE ids`` as a word is written inside a sentence (with its prefix space)."""
    def encode(word: str) -> list[int]:
        return bpe.encode(word).ids
    return encode
