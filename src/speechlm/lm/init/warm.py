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
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import PreTrainedModel

from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.lm.model import load_speech_lm
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)


def warm_init(text_lm_dir: str | Path, vocab: SpeechVocab, seed: int,
              embed_init: str = "mean") -> PreTrainedModel:
    """Load the text LM at ``text_lm_dir`` and give it an embedding table for ``vocab``."""
    if embed_init not in ("mean", "random"):
        raise ConfigError(f"embed_init={embed_init!r} must be 'mean' or 'random'")
    src_dir = Path(text_lm_dir)
    if (src_dir / "speech_vocab.json").is_file():
        src = load_speech_lm(src_dir)
        model, src_vocab = src.model, src.vocab
    else:  # any local HF causal LM directory: no shared families, only the transformer is reused
        from transformers import AutoModelForCausalLM

        if not (src_dir / "config.json").is_file():
            raise CheckpointError(f"{src_dir}: no text LM here (config.json missing)")
        model = AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch.float32)
        src_vocab = None
    old = model.get_input_embeddings().weight.detach()  # (V_text, D)
    gen = torch.Generator().manual_seed(seed)
    mean, std = old.mean(0), old.std(0)
    if embed_init == "mean":
        new = mean + std * torch.randn(vocab.size, old.shape[1], generator=gen)  # (V, D)
    else:
        new = torch.randn(vocab.size, old.shape[1], generator=gen) * model.config.initializer_range
    copied = []
    if src_vocab is not None:
        for fam in vocab.families:
            if src_vocab.has(fam.name) and src_vocab.family(fam.name).size == fam.size:
                s = src_vocab.family(fam.name)
                new[fam.offset:fam.offset + fam.size] = old[s.offset:s.offset + s.size]
                copied.append(fam.name)
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
