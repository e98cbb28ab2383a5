"""Codec LM sequences: the vocabulary, prompted examples (TTS, continuation, semantic -> acoustic)
and VALL-E's non-autoregressive (NAR) examples, for any layout.

One sequence convention for every codec LM (all rows; rows > 0 hold ``<pad>`` under the prefix)::

    <bos> <task> [conditioning...] <sep> | prompt codes + target codes (layout) | <eos>

``<task>`` selects the task (VioLA: one model, several tasks): ``<tts>`` with phonemes,
``<continue>`` with nothing (unconditional continuation), ``<semantic>`` with semantic units
(AudioLM's stage 2). Conditioning and prompt positions are not scored; the target codes and
``<eos>`` are. ``<asr>`` (VioLA's speech -> text) reverses the roles: the codes are the
conditioning and the phonemes after them are scored::

    <bos> <asr> | codes (layout, not scored) | <sep> phonemes <eos>   (row 0; <pad> below)

TTS prompts are a crop of *another* utterance of the same speaker, so the model
learns to take the voice from the prompt and the content from the phonemes (no prompt transcript
is needed at inference).

NAR (VALL-E stage 2): all rows in parallel, bidirectional attention; the prefix also holds
``<stage j>``; the prompt has every codebook, the target codebooks ``< j``; only codebook ``j`` of the
target frames is scored, at its own position (no shift).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from speechlm.core.errors import ConfigError, DataError
from speechlm.lm.codec.data import CodecDataset, CodecRecord
from speechlm.lm.config import CODEC_TASKS
from speechlm.lm.packing import Batch
from speechlm.lm.sequences import IGNORE, Example, SequenceBuilder, register_builder, sequence_frame
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

MAX_STAGES = 16
# <asr> comes last so the markers of models trained before it keep their ids
MARKERS = ("<tts>", "<continue>", "<semantic>", "<sep>") + \
    tuple(f"<stage{j}>" for j in range(MAX_STAGES)) + ("<asr>",)
TASK_FAMILY, PHONEMES, UNITS = "task", "phonemes", "units"


def codec_family(k: int) -> str:
    return f"codec_{k}"


def codec_vocab(dataset: CodecDataset) -> SpeechVocab:
    """specials | codec_0..codec_{K-1} | units (if the dataset has them) | phonemes | task markers."""
    meta = dataset.meta
    vocab = SpeechVocab.default()
    for k in range(meta["n_codebooks"]):
        vocab = vocab.add_family(codec_family(k), meta["codebook_size"], kind="codec",
                                 codec=meta["codec"], frame_rate=meta["frame_rate"])
    if dataset.has_units:
        vocab = vocab.add_family(UNITS, meta["n_units"], kind="units", tokenizer=meta["tokenizer"])
    vocab = vocab.add_family(PHONEMES, len(dataset.phonemes), kind="text", labels=dataset.phonemes,
                             language=meta.get("language"))
    return vocab.add_family(TASK_FAMILY, len(MARKERS), kind="marker", labels=MARKERS)


def marker(name: str) -> int:
    return MARKERS.index(name)


def task_prefix(task: str, record: CodecRecord | None = None, phonemes: Sequence[int] | None = None,
                units: Sequence[int] | None = None) -> list[tuple[str, Sequence[int]]]:
    """The conditioning of ``task`` as ``(family, local ids)`` parts (from a record or given)."""
    if task == "tts":
        ph = record.phonemes if record is not None else phonemes
        return [(TASK_FAMILY, [marker("<tts>")]), (PHONEMES, list(ph)), (TASK_FAMILY, [marker("<sep>")])]
    if task == "semantic":
        un = record.units if record is not None else units
        if un is None:
            raise DataError("task semantic needs semantic units (build the dataset with a tokenizer)")
        return [(TASK_FAMILY, [marker("<semantic>")]), (UNITS, list(un)), (TASK_FAMILY, [marker("<sep>")])]
    if task == "continue":
        return [(TASK_FAMILY, [marker("<continue>")])]
    if task == "asr":
        return [(TASK_FAMILY, [marker("<asr>")])]
    raise ConfigError(f"task {task!r} is not one of {list(CODEC_TASKS)}")


def prefix_ids(space: TokenSpace, parts: Sequence[tuple[str, Sequence[int]]]) -> np.ndarray:
    """``(R, n)`` model ids of ``<bos>`` + the conditioning parts (row 0; ``<pad>`` elsewhere)."""
    before, _ = sequence_frame(space.vocab, end=False)
    bos = np.tile(np.asarray(before, dtype=np.int64), (space.n_rows, 1))
    return np.concatenate([bos] + [space.prefix_ids(fam, ids) for fam, ids in parts], axis=1)


def code_frames(space: TokenSpace, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``(stream, frame)`` of every ``(row, step)`` of ``n_frames`` frames (-1 where no code)."""
    pos = space.layout.positions(n_frames)
    valid = pos >= 0
    return np.where(valid, pos // max(n_frames, 1), -1), np.where(valid, pos % max(n_frames, 1), -1)


def prompted_example(space: TokenSpace, parts: Sequence[tuple[str, Sequence[int]]],
                     target: np.ndarray, prompt: np.ndarray | None, source: str) -> Example:
    """``<bos> parts | layout(prompt ++ target) | <eos>``; only target codes and ``<eos>`` scored."""
    n_prompt = 0 if prompt is None else prompt.shape[1]
    codes = target if prompt is None else np.concatenate([prompt, target], axis=1)
    ids, _ = space.encode(codes, source)                                  # (R, S)
    stream, frame = code_frames(space, codes.shape[1])
    pre = prefix_ids(space, parts)
    eos = np.full((space.n_rows, 1), space.vocab.eos_id, dtype=np.int64)
    labels = np.where((stream >= 0) & (frame >= n_prompt), ids, IGNORE)
    return Example(np.concatenate([pre, ids, eos], axis=1),
                   np.concatenate([np.full(pre.shape, IGNORE), labels, eos], axis=1))


def asr_example(space: TokenSpace, codes: np.ndarray, phonemes: Sequence[int], source: str) -> Example:
    """``<bos> <asr> | layout(codes) | <sep> phonemes <eos>``; only the phonemes (row 0) and
    ``<eos>`` are scored: the model reads speech and writes its phonemes."""
    ids, _ = space.encode(codes, source)
    pre = prefix_ids(space, task_prefix("asr"))
    text = np.concatenate([space.prefix_ids(TASK_FAMILY, [marker("<sep>")]),
                           space.prefix_ids(PHONEMES, list(phonemes))], axis=1)
    eos = np.full((space.n_rows, 1), space.vocab.eos_id, dtype=np.int64)
    labels = np.full(text.shape, IGNORE, dtype=np.int64)
    labels[0, 1:] = text[0, 1:]
    return Example(np.concatenate([pre, ids, text, eos], axis=1),
                   np.concatenate([np.full(pre.shape, IGNORE), np.full(ids.shape, IGNORE), labels,
                                   eos], axis=1))


def nar_example(space: TokenSpace, parts: Sequence[tuple[str, Sequence[int]]], target: np.ndarray,
                prompt: np.ndarray | None, stage: int, source: str) -> Example:
    """NAR example for codebook ``stage``: codebooks ``>= stage`` of the target are ``<pad>``
    (unknown) and codebook ``stage`` of the target frames is the label at its own position."""
    if space.layout.name != "parallel":
        raise ConfigError(f"{source}: the NAR model reads the parallel layout, not {space.layout.name}")
    if not 1 <= stage < min(space.n_streams, MAX_STAGES):
        raise ConfigError(f"{source}: NAR stage {stage} must be in 1..{space.n_streams - 1}")
    n_prompt = 0 if prompt is None else prompt.shape[1]
    codes = target if prompt is None else np.concatenate([prompt, target], axis=1)
    ids, _ = space.encode(codes, source)                                  # (K, T)
    labels = np.full(ids.shape, IGNORE, dtype=np.int64)
    labels[stage, n_prompt:] = ids[stage, n_prompt:]
    ids[stage:, n_prompt:] = space.vocab.pad_id
    pre = prefix_ids(space, [(TASK_FAMILY, [marker(f"<stage{stage}>")]), *parts])
    return Example(np.concatenate([pre, ids], axis=1),
                   np.concatenate([np.full(pre.shape, IGNORE), labels], axis=1))


def crop(codes: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of ``frames`` frames (all of it when shorter)."""
    if codes.shape[1] <= frames:
        return codes
    start = int(rng.integers(0, codes.shape[1] - frames + 1))
    return codes[:, start:start + frames]


def prompt_partner(records: Sequence[CodecRecord], seed: int) -> list[int | None]:
    """For each record, another record of the same speaker (seeded), or None when it has none."""
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        by_speaker.setdefault(rec.speaker, []).append(i)
    out: list[int | None] = []
    for i, rec in enumerate(records):
        others = [j for j in by_speaker[rec.speaker] if j != i]
        out.append(int(rng.choice(others)) if others else None)
    return out


@register_builder("codec_prompted")
class CodecPromptedBuilder(SequenceBuilder):
    """Per record and task: a prompted example (``tasks``, ``prompt_frames`` set by the recipe)."""

    tasks: tuple[str, ...] = ("tts",)
    prompt_frames: int = 150
    seed: int = 0
    streams: tuple[int, ...] | None = None   # which codebooks of the record the model reads

    def records_examples(self, records: Sequence[CodecRecord], source: str) -> list[Example]:
        rng = np.random.default_rng(self.seed)
        partner = prompt_partner(records, self.seed)
        out = []
        for i, rec in enumerate(records):
            codes = self.select(rec.codes)
            for task in self.tasks:
                if task == "asr":
                    out.append(asr_example(self.space, codes, rec.phonemes, f"{source}: {rec.id}"))
                    continue
                prompt = None
                if task == "tts" and partner[i] is not None:
                    prompt = crop(self.select(records[partner[i]].codes), self.prompt_frames, rng)
                out.append(prompted_example(self.space, task_prefix(task, rec), codes, prompt,
                                            f"{source}: {rec.id}"))
        return out

    def select(self, codes: np.ndarray) -> np.ndarray:
        return codes if self.streams is None else codes[list(self.streams)]


class PaddedExamples:
    """One example per block, each batch padded to its longest example (NAR: bidirectional
    attention must not see other utterances, so no packing). Same cursor contract as
    :class:`speechlm.lm.packing.PackedExamples`."""

    def __init__(self, examples: Sequence[Example], pad_id: int, seed: int, max_len: int) -> None:
        if not examples:
            raise DataError("no NAR training examples")
        long = [e.input_ids.shape[1] for e in examples if e.input_ids.shape[1] > max_len]
        if long:
            raise DataError(f"{len(long)} NAR examples are longer than seq_len={max_len} (longest "
                            f"{max(long)}); raise seq_len")
        self.examples, self.pad_id, self.seed = list(examples), pad_id, seed
        self.blocks_per_epoch = len(self.examples)
        self.tokens = sum(e.input_ids.shape[1] for e in self.examples)

    def blocks(self, cursor: int, n: int) -> Batch:
        chosen = []
        for c in range(cursor, cursor + n):
            epoch, idx = divmod(c, self.blocks_per_epoch)
            chosen.append(self.examples[np.random.default_rng([self.seed, epoch]).permutation(
                self.blocks_per_epoch)[idx]])
        return padded_batch(chosen, self.pad_id)


def padded_batch(examples: Sequence[Example], pad_id: int) -> Batch:
    """``(B, R, S)`` input ids padded with ``pad_id`` and labels with -100."""
    length = max(e.input_ids.shape[1] for e in examples)
    rows = examples[0].input_ids.shape[0]
    ids = np.full((len(examples), rows, length), pad_id, dtype=np.int64)
    labels = np.full((len(examples), rows, length), IGNORE, dtype=np.int64)
    for b, e in enumerate(examples):
        ids[b, :, :e.input_ids.shape[1]] = e.input_ids
        labels[b, :, :e.labels.shape[1]] = e.labels
    return Batch(torch.from_numpy(ids), torch.from_numpy(labels))


def nar_attention_mask(input_ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``(B, 1, S, S)`` bool: every position attends to every non-padding position (row 0 is
    ``<pad>`` only in batch padding)."""
    keep = input_ids[:, 0] != pad_id                                      # (B, S)
    return keep[:, None, None, :].expand(-1, 1, keep.shape[1], -1)


def nar_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
             loss_weights: torch.Tensor | None = None, pad_id: int = 0) -> torch.Tensor:
    """Cross entropy of the NAR's logits at the labelled positions (no shift)."""
    mask = nar_attention_mask(input_ids, pad_id)
    logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits  # (B, R, S, V)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             labels.reshape(-1), ignore_index=IGNORE)


@dataclass(frozen=True)
class LengthModel:
    """Target frames from the phoneme count: ``frames_per_phoneme`` measured on the train split."""

    frames_per_phoneme: float

    @classmethod
    def fit(cls, records: Sequence[CodecRecord]) -> LengthModel:
        frames = sum(r.codes.shape[1] for r in records)
        phones = sum(max(1, r.phonemes.size) for r in records)
        return cls(frames / phones)

    def frames(self, n_phonemes: int) -> int:
        return max(1, int(round(n_phonemes * self.frames_per_phoneme)))
