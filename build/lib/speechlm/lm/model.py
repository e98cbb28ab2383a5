"""HF causal LMs over a :class:`SpeechVocab`, saved as plain HF directories.

A model directory loads with ``AutoModelForCausalLM.from_pretrained`` and holds::

    config.json, model.safetensors   HF Llama-style causal LM
    speech_vocab.json                the token space (families and offsets)
    speechlm.json                    kind, streams + layout, tokenizers, seq_len (lm/modeldir.py)
    tokenizer.json                   BPE tokenizer (text LMs only)

Presets are Llama configs (RMSNorm, rotary, SwiGLU), sized for CPU (tiny) up to a ~100M GPU model.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PretrainedConfig,
                          PreTrainedModel)

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import CheckpointError, ConfigError, SpeechLMError
from speechlm.core.files import read_artefact_dir
from speechlm.lm.modeldir import META_FILE, ModelMeta, read_meta, write_meta
from speechlm.lm.multistream import MultiStreamConfig, MultiStreamForCausalLM
from speechlm.lm.sequences import utterance_tokens
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"

# hidden, layers, heads, intermediate (SwiGLU width), max positions
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                 intermediate_size=384, max_position_embeddings=1024),
    "small": dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6,
                  intermediate_size=1024, max_position_embeddings=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=2048, max_position_embeddings=4096),
}


def model_config(preset: str, vocab: SpeechVocab, **overrides: Any) -> LlamaConfig:
    """Llama config for ``preset``; ``overrides`` (hidden_size, num_hidden_layers, ...) win if not None."""
    if preset not in PRESETS:
        raise ConfigError(f"model preset {preset!r} is not one of {sorted(PRESETS)}")
    values = dict(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values["hidden_size"] % values["num_attention_heads"]:
        raise ConfigError(f"hidden_size={values['hidden_size']} is not divisible by "
                          f"num_attention_heads={values['num_attention_heads']}")
    return LlamaConfig(vocab_size=vocab.size, pad_token_id=vocab.pad_id, bos_token_id=vocab.bos_id,
                       eos_token_id=vocab.eos_id, tie_word_embeddings=True, rope_theta=10000.0,
                       attention_dropout=0.0, initializer_range=0.02, **values)


def build_model(config: PretrainedConfig, seed: int) -> PreTrainedModel:
    """Cold init: HF's ``_init_weights`` (normal(0, initializer_range)) under a fixed seed; a
    Llama config gives a ``LlamaForCausalLM``, a multi-stream config a ``MultiStreamForCausalLM``.

    The model gets its own copy of ``config``: HF models keep the object they are given, so two
    models built from one config would otherwise share settings such as the attention kernel.
    """
    cls = MultiStreamForCausalLM if isinstance(config, MultiStreamConfig) else LlamaForCausalLM
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = cls(copy.deepcopy(config))
    finally:
        torch.set_rng_state(gen_state)
    return model


def count_params(model: torch.nn.Module, embeddings: bool = True) -> int:
    n = sum(p.numel() for p in model.parameters())
    if not embeddings:
        n -= model.get_input_embeddings().weight.numel()
    return n


@dataclass
class SpeechLM:
    """A loaded model directory: HF model (eval mode) + vocabulary + how it was made."""

    model: PreTrainedModel
    vocab: SpeechVocab
    spec: ModelMeta
    path: Path
    text_tokenizer: Any = None  # tokenizers.Tokenizer for text LMs

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def tokenizer_dir(self) -> str | None:
        return self.spec.tokenizer_dir

    @property
    def meta(self) -> dict[str, Any]:
        """``speechlm.json`` as a dict (see :class:`ModelMeta` for the typed view)."""
        return self.spec.to_dict()

    @property
    def space(self) -> TokenSpace:
        return self.spec.space(self.vocab)

    def encode_units(self, units: list[int]) -> list[int]:
        """A prompt or scored item of units: :func:`utterance_tokens` without the end (BOS + units,
        no EOS), the same start every training utterance has."""
        return utterance_tokens(self.vocab, [self.vocab.encode("units", units)], end=False)[0].tolist()

    def decode_units(self, ids: list[int]) -> list[int]:
        """Global ids -> unit indices; specials and other families are dropped."""
        return self.vocab.decode("units", ids)

    def encode_text(self, text: str) -> list[int]:
        """A text prompt or scored item (text LMs), framed like :meth:`encode_units`."""
        if self.text_tokenizer is None:
            raise CheckpointError(f"{self.path}: this model has no text tokenizer ({TOKENIZER_FILE})")
        ids = self.vocab.encode("text", self.text_tokenizer.encode(text).ids)
        return utterance_tokens(self.vocab, [ids], end=False)[0].tolist()

    def decode_text(self, ids: list[int]) -> str:
        if self.text_tokenizer is None:
            raise CheckpointError(f"{self.path}: this model has no text tokenizer ({TOKENIZER_FILE})")
        return self.text_tokenizer.decode(self.vocab.decode("text", ids))


def write_model_dir(out_dir: Path, model: PreTrainedModel, vocab: SpeechVocab, meta: ModelMeta,
                    text_tokenizer_file: Path | None = None) -> Path:
    """Write the HF directory into ``out_dir`` (which must exist; use inside atomic_dir)."""
    model.save_pretrained(out_dir, safe_serialization=True)
    vocab.save(out_dir)
    write_meta(out_dir, meta)
    if text_tokenizer_file is not None:
        (out_dir / TOKENIZER_FILE).write_bytes(Path(text_tokenizer_file).read_bytes())
    return out_dir


def save_speech_lm(out_dir: str | Path, model: PreTrainedModel, vocab: SpeechVocab,
                   meta: ModelMeta | str, tokenizer_dir: str | None = None,
                   extra: dict[str, Any] | None = None,
                   text_tokenizer_file: Path | None = None) -> Path:
    """Atomic save of a complete model directory. ``meta`` is a :class:`ModelMeta`, or the kind
    of a one-stream model (``"speech"``/``"text"``) with its ``tokenizer_dir`` and ``extra``."""
    if isinstance(meta, str):
        meta = ModelMeta.single(meta, tokenizer_dir, **(extra or {}))
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_model_dir(tmp, model, vocab, meta, text_tokenizer_file)
    return out_dir


def load_speech_lm(path: str | Path, device: str | torch.device = "cpu") -> SpeechLM:
    """Load a model directory written by training; raises CheckpointError if missing or corrupt."""
    path = Path(path)
    read_artefact_dir(path, "model", weights=("model.safetensors",))
    meta = read_meta(path)
    vocab = SpeechVocab.load(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except Exception as err:  # noqa: BLE001 - HF raises many types for a bad directory
        raise CheckpointError(f"{path}: cannot load model ({type(err).__name__}: {err})") from None
    try:
        sizes = meta.space(vocab).row_sizes
    except SpeechLMError as err:
        raise CheckpointError(f"{path / META_FILE}: streams do not match speech_vocab.json ({err})") from None
    if model_row_sizes(model) != sizes:
        raise CheckpointError(f"{path}: model vocab_size={model_row_sizes(model)} but "
                              f"speech_vocab.json + speechlm.json give {sizes} tokens")
    text_tok = None
    if (path / TOKENIZER_FILE).is_file():
        from tokenizers import Tokenizer

        text_tok = Tokenizer.from_file(str(path / TOKENIZER_FILE))
    model.to(device).eval()
    return SpeechLM(model=model, vocab=vocab, spec=meta, path=path, text_tokenizer=text_tok)


def model_row_sizes(model: PreTrainedModel) -> tuple[int, ...]:
    """Vocabulary size of each model row: one for a plain causal LM, one per stream otherwise."""
    sizes = getattr(model.config, "row_vocab_sizes", None)
    return tuple(sizes) if sizes else (int(model.config.vocab_size),)
