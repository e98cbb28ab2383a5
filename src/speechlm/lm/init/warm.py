"""Warm init (TWIST): reuse a pretrained text LM's transformer for a new token space.

TWIST keeps every transformer block (attention, MLP, norms) of the text LM and replaces the token
embeddings and LM head, since text BPE ids mean nothing for speech units. Our choice:

* **shared special tokens** (pad/bos/eos/unk, ids 0..3 in every SpeechVocab) copy their rows from
  the text LM, so the model keeps its notion of "sequence start/end";
* **new families** (speech units) start at the *mean* of the text LM's embedding rows plus
  Gaussian noise with the text embeddings' per-dimension std. This keeps the input scale the
  transformer was trained on (a fresh N(0, 0.02) table does not) while keeping units distinguishable;
  ``embed_init="random"`` gives TWIST's original fresh init instead;
* the LM head stays tied to the embeddings (as in our presets), so it is initialized the same way.
* families that exist in both vocabularies with the same name and size (e.g. ``text`` when the
  speech vocab also carries text BPE for interleaving) keep their trained rows.

Multi-row token spaces (K streams read in parallel, :mod:`speechlm.lm.multistream`) get the text
LM's transformer as the backbone, and each row's embedding table and head start the same way from
that row's vocabulary (specials + its stream).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel

from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.lm.model import build_model, load_speech_lm
from speechlm.lm.multistream import multistream_config
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)


def _load_text_lm(src_dir: Path) -> tuple[PreTrainedModel, SpeechVocab | None]:
    if (src_dir / "speech_vocab.json").is_file():
        src = load_speech_lm(src_dir)
        return src.model, src.vocab
    # any local HF causal LM directory: no shared families, only the transformer is reused
    from transformers import AutoModelForCausalLM

    if not (src_dir / "config.json").is_file():
        raise CheckpointError(f"{src_dir}: no text LM here (config.json missing)")
    return AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch.float32), None


def new_rows(old: torch.Tensor, vocab: SpeechVocab, src_vocab: SpeechVocab | None,
             gen: torch.Generator, embed_init: str, init_range: float) -> tuple[torch.Tensor, list[str]]:
    """Embedding rows ``(V, D)`` for ``vocab`` from the text LM's table ``old`` (see the module
    docstring); returns them with the names of the families copied as they were."""
    mean, std = old.mean(0), old.std(0)
    if embed_init == "mean":
        new = mean + std * torch.randn(vocab.size, old.shape[1], generator=gen)  # (V, D)
    else:
        new = torch.randn(vocab.size, old.shape[1], generator=gen) * init_range
    copied = []
    if src_vocab is not None:
        for fam in vocab.families:
            if src_vocab.has(fam.name) and src_vocab.family(fam.name).size == fam.size:
                s = src_vocab.family(fam.name)
                new[fam.offset:fam.offset + fam.size] = old[s.offset:s.offset + s.size]
                copied.append(fam.name)
    return new, copied


def warm_init(text_lm_dir: str | Path, space: TokenSpace, seed: int, embed_init: str = "mean",
              depth_layers: int = 0, unread_rows: Sequence[int] = ()) -> PreTrainedModel:
    """Load the text LM at ``text_lm_dir`` and give it embeddings and heads for ``space``
    (``unread_rows``: see :func:`~speechlm.lm.multistream.multistream_config`)."""
    if embed_init not in ("mean", "random"):
        raise ConfigError(f"embed_init={embed_init!r} must be 'mean' or 'random'")
    src_dir = Path(text_lm_dir)
    model, src_vocab = _load_text_lm(src_dir)
    old = model.get_input_embeddings().weight.detach()  # (V_text, D)
    gen = torch.Generator().manual_seed(seed)
    init_range = model.config.initializer_range
    if space.n_rows > 1:
        return _warm_multistream(model, src_vocab, space, seed, gen, embed_init, depth_layers,
                                 unread_rows)
    vocab = space.vocab
    new, copied = new_rows(old, vocab, src_vocab, gen, embed_init, init_range)
    log.info("warm init from %s: copied families %s, new rows init=%s", src_dir, copied, embed_init)
    model.resize_token_embeddings(vocab.size, mean_resizing=False)
    model.get_input_embeddings().weight.data.copy_(new)
    if not model.config.tie_word_embeddings:
        model.get_output_embeddings().weight.data.copy_(new)
    model.config.vocab_size = vocab.size
    model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id = (
        vocab.pad_id, vocab.bos_id, vocab.eos_id)
    model.train()
    return model


def _warm_multistream(text_lm: PreTrainedModel, src_vocab: SpeechVocab | None, space: TokenSpace,
                      seed: int, gen: torch.Generator, embed_init: str,
                      depth_layers: int, unread_rows: Sequence[int]) -> PreTrainedModel:
    """The text LM's transformer as the backbone of a multi-row model; row tables and heads from
    each row's vocabulary."""
    model = build_model(multistream_config(text_lm.config, space.row_sizes, depth_layers,
                                           unread_rows), seed)
    state = {k: v for k, v in text_lm.base_model.state_dict().items() if "embed_tokens" not in k}
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    if unexpected or any("embed_tokens" not in k for k in missing):
        raise CheckpointError(f"text LM backbone does not fit ({missing[:3]}, {unexpected[:3]})")
    old = text_lm.get_input_embeddings().weight.detach()
    for row in range(space.n_rows):
        rows, _ = new_rows(old, space.row_vocab(row), src_vocab, gen, embed_init,
                           text_lm.config.initializer_range)
        if model.embeddings[row] is not None:  # an unread row has no input table
            model.embeddings[row].weight.data.copy_(rows)
        model.heads[row].weight.data.copy_(rows)
    log.info("warm init: %d-row model on the text LM's backbone (%d rows sizes %s)", space.n_rows,
             space.n_rows, list(space.row_sizes))
    model.train()
    return model
