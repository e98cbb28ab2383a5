"""Prosody recipes (``pgslm-tiny``, ``spiritlm-expressive-tiny``): speech-only pretraining on units
plus prosody streams (pGSLM duration + F0; SpiRit-LM pitch + style tokens), on the core's
multi-stream model, layouts and builders (:mod:`speechlm.lm.recipes.pretrain`).

What this module adds: the dataset's streams are checked against the recipe's
``prosody_tokenizers`` before training (a stream made by another tokenizer, or with another
vocabulary, is a one-line ``ConfigError``), and each tokenizer's record
(:func:`speechlm.tokenizers.prosody.saved.describe`: streams, vocabulary sizes, digest, and the
F0 / duration bin edges and speaker means of the pGSLM tokenizer) is saved in ``speechlm.json``
of the model directory and of every checkpoint, so a model decodes its F0 tokens on its own.
"""

from __future__ import annotations

from pathlib import Path

from speechlm.core.errors import ConfigError
from speechlm.lm.config import TrainConfig
from speechlm.lm.recipes import pretrain
from speechlm.tokenizers.prosody import load_prosody_tokenizer
from speechlm.tokenizers.prosody.dataset import parse_kinds
from speechlm.tokenizers.prosody.saved import describe, stream_sizes
from speechlm.tokenizers.tokens import TokenDataset


def check_streams(dataset: TokenDataset, streams: list[str], toks: dict, source: str) -> dict:
    """``{kind: record}`` of the tokenizers behind ``streams[1:]`` after checking each stream of
    ``dataset`` was made by that tokenizer with that vocabulary."""
    records = {}
    for name in streams[1:]:
        spec = dataset.stream(name)
        owner = next((t for t in toks.values() if name in stream_sizes(t)), None)
        if owner is None:
            raise ConfigError(f"{source}: stream {name!r} of {dataset.path} comes from none of "
                              f"prosody_tokenizers ({', '.join(str(t.path) for t in toks.values())})")
        size = stream_sizes(owner)[name]
        if spec.tokenizer is None or Path(spec.tokenizer).resolve() != Path(owner.path).resolve() \
                or spec.vocab_size != size:
            raise ConfigError(f"{source}: stream {name!r} of {dataset.path} was made by "
                              f"{spec.tokenizer} ({spec.vocab_size} codes), but prosody_tokenizers "
                              f"gives {owner.path} ({size} codes); rebuild tokens_dir")
        records[owner.kind] = describe(owner)
    return records


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    """Check the streams against the prosody tokenizers, then pretrain and save their records."""
    if not cfg.prosody_tokenizers or not cfg.tokens_dir or not cfg.streams:
        raise ConfigError(f"{source}: recipe=prosody needs prosody_tokenizers, tokens_dir and streams")
    toks = {kind: load_prosody_tokenizer(folder)
            for kind, folder in parse_kinds(cfg.prosody_tokenizers, source).items()}
    records = check_streams(TokenDataset(cfg.tokens_dir), list(cfg.streams), toks, source)
    return pretrain.run(cfg, resume, source, meta_extra={"prosody": records})
