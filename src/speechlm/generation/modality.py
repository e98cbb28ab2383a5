"""Output-modality control for joint speech–text LMs: one model, four directions.

A prompt is a list of modality segments (speech units or text BPE,
:class:`~speechlm.lm.interleave.tokens.Segment`); the continuation is forced into ``modality``:
when the prompt ends in the other modality its marker is appended (``[TEXT]`` after a spoken
prompt: speech->text, an ASR-like use; ``[SPEECH]`` after a written one: text->speech, TTS-like),
and every id outside that modality's family (and ``<eos>``) is banned while sampling. A prompt
that already ends in ``modality`` is simply continued (speech->speech, text->text).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speechlm.core.errors import ConfigError
from speechlm.generation.sampling import generate
from speechlm.lm.interleave.tokens import (MARKERS, Segment, family_range, is_joint, marker_id,
                                           merge, segments_to_ids)


def require_joint(lm, what: str) -> None:
    """ConfigError unless ``lm`` has units, text and the modality markers in its vocabulary."""
    if not is_joint(lm.vocab):
        raise ConfigError(f"{lm.path}: {what} needs a joint speech–text model (units, text and "
                          f"modality markers in its vocabulary); this model has only "
                          f"{[n for n in lm.vocab.names if n != 'specials']}: it was trained "
                          "without text (train a recipe: sutlm model, e.g. sutlm-interleave-tiny)")
    if lm.text_tokenizer is None:
        raise ConfigError(f"{lm.path}: {what} needs the model's tokenizer.json (text BPE)")


def prompt_ids(lm, prompt: Sequence[Segment], modality: str) -> list[int]:
    """``<bos>`` + the prompt's segments + the marker of ``modality`` when it differs from the
    last segment's (what the model saw at a modality change in training)."""
    segments = merge(prompt)
    ids, _ = segments_to_ids(lm.vocab, segments, end=False)
    if not segments or segments[-1].modality != modality:
        ids.append(marker_id(lm.vocab, modality))
    return ids


def banned_ids(lm, modality: str) -> torch.Tensor:
    """``(V,)`` True for every id but ``modality``'s family and ``<eos>``."""
    lo, hi = family_range(lm.vocab, modality)
    banned = torch.ones(lm.vocab.size, dtype=torch.bool)
    banned[lo:hi] = False
    banned[lm.vocab.eos_id] = False
    return banned


def generate_modality(lm, prompt: Sequence[Segment], modality: str, max_new_tokens: int,
                      temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                      seed: int = 0, context: Sequence[int] = ()) -> Segment:
    """Continue ``prompt`` in ``modality`` (``speech`` or ``text``); returns the new segment
    (family-local ids: units or BPE), stopped at ``<eos>`` or ``max_new_tokens``. ``context``:
    complete sequences (model ids, e.g. few-shot examples) fed before the prompt."""
    if modality not in MARKERS:
        raise ConfigError(f"modality={modality!r} must be one of {sorted(MARKERS)}")
    require_joint(lm, f"generating {modality}")
    ids = list(context) + prompt_ids(lm, prompt, modality)
    device = next(lm.model.parameters()).device
    new = generate(lm.model, ids, max_new_tokens, temperature, top_k, top_p,
                   eos_id=lm.vocab.eos_id, seed=seed, banned=banned_ids(lm, modality).to(device))
    family = "text" if modality == "text" else "units"
    return Segment(modality, tuple(lm.vocab.decode(family, [i for i in new if i != lm.vocab.eos_id])))
