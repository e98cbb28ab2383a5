"""The pipeline layer: build what a recipe needs and is missing, then run the recipe.

corpus (``corpus_dir``, synthesized) -> tokenizer (``tokenizer_dir``, trained) -> token dataset
(``units_dir``, tokenized; ``tokens_dir`` with ``derive_streams`` added) -> text LM
(``text_lm_dir``, for ``init: warm``) -> recipe. The CLI
(``speechlm train``) and the demo call this; ``speechlm.lm`` never does (a recipe only reads its
inputs). Inputs that exist are checked against each other first: a ``units_dir`` made by another
tokenizer than the recipe's ``tokenizer_dir`` fails with one line instead of silently winning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from speechlm.core.config import load_config
from speechlm.core.errors import ConfigError
from speechlm.core.files import read_json
from speechlm.lm.config import TrainConfig
from speechlm.lm.modeldir import META_FILE

log = logging.getLogger(__name__)


def check_units_tokenizer(cfg: TrainConfig, source: str) -> None:
    """ConfigError when an existing ``units_dir`` (or ``tokens_dir``) was made by another
    tokenizer than ``tokenizer_dir``."""
    for key in ("units_dir", "tokens_dir"):
        folder = getattr(cfg, key)
        meta_path = Path(folder) / "meta.json" if folder else None
        if meta_path is None or not meta_path.is_file():
            continue
        made_by = read_json(meta_path).get("tokenizer")
        if made_by and Path(made_by).resolve() != Path(cfg.tokenizer_dir).resolve():
            raise ConfigError(f"{source}: {key}={folder} was tokenized with {made_by}, but "
                              f"tokenizer_dir={cfg.tokenizer_dir}; set tokenizer_dir to that "
                              f"tokenizer, or point {key} at a new directory to tokenize again")


def ensure_corpus(cfg: TrainConfig, progress: bool = True) -> Path:
    """The corpus at ``corpus_dir``; synthesized when missing."""
    corpus = Path(cfg.corpus_dir)
    if not (corpus / "meta.json").is_file():
        from speechlm.data.synth import synthesize_corpus

        log.warning("corpus %s missing: synthesizing %.2f h", corpus, cfg.corpus_hours)
        synthesize_corpus(corpus, hours=cfg.corpus_hours, voices=cfg.corpus_voices, seed=0,
                          show_progress=progress, styles=cfg.corpus_styles)
    return corpus


def ensure_tokenizer(cfg: TrainConfig) -> Path:
    """The unit tokenizer at ``tokenizer_dir``; trained on ``corpus_dir`` when missing."""
    tok = Path(cfg.tokenizer_dir)
    if not (tok / "config.json").is_file():
        from speechlm.tokenizers import train_tokenizer

        log.warning("tokenizer %s missing: training %s with %d units", tok, cfg.tokenizer_features,
                    cfg.tokenizer_units)
        train_tokenizer(cfg.corpus_dir, tok, features=cfg.tokenizer_features,
                        units=cfg.tokenizer_units, seed=0)
    return tok


def ensure_units(cfg: TrainConfig, progress: bool = True) -> Path:
    """The token dataset at ``units_dir``; build corpus, tokenizer and units when missing."""
    units = Path(cfg.units_dir)
    if (units / "meta.json").is_file():
        return units
    corpus, tok = ensure_corpus(cfg, progress), ensure_tokenizer(cfg)
    from speechlm.tokenizers import tokenize_corpus

    log.warning("token dataset %s missing: tokenizing %s", units, corpus)
    tokenize_corpus(tok, corpus, units, show_progress=progress)
    return units


def ensure_tokens(cfg: TrainConfig, source: str) -> Path:
    """The dataset the recipe trains on: ``tokens_dir`` (derived from ``units_dir`` with
    ``derive_streams`` when missing) or ``units_dir``."""
    if cfg.tokens_dir is None:
        return Path(cfg.units_dir)
    tokens = Path(cfg.tokens_dir)
    if (tokens / "meta.json").is_file():
        return tokens
    if cfg.prosody_tokenizers:
        from speechlm.tokenizers.prosody.dataset import build_prosody_dataset

        log.warning("token dataset %s missing: adding prosody streams %s to %s", tokens,
                    list(cfg.prosody_tokenizers), cfg.units_dir)
        return build_prosody_dataset(cfg.corpus_dir, cfg.tokenizer_dir, tokens,
                                     cfg.prosody_tokenizers, source, cfg.progress)
    if cfg.dialogue_dir:
        return ensure_dialogue_tokens(cfg)
    if not cfg.derive_streams:
        raise ConfigError(f"{source}: tokens_dir={tokens} does not exist and none of "
                          "derive_streams, prosody_tokenizers or dialogue_dir is set, so it "
                          "cannot be built")
    from speechlm.tokenizers.tokens import derive_streams

    log.warning("token dataset %s missing: deriving %s from %s", tokens, list(cfg.derive_streams),
                cfg.units_dir)
    return derive_streams(cfg.units_dir, tokens, cfg.derive_streams)


def ensure_dialogue_tokens(cfg: TrainConfig) -> Path:
    """Frame-level duplex streams at ``tokens_dir`` from the two-channel corpus ``dialogue_dir``
    (synthesized with ``dialogue_hours`` (else ``corpus_hours``) and ``corpus_voices`` when
    missing)."""
    from speechlm.lm.duplex import user_lookahead
    from speechlm.tokenizers.dialogue import tokenize_dialogues

    dialogues = Path(cfg.dialogue_dir)
    if not (dialogues / "meta.json").is_file():
        from speechlm.data.dialogue import synthesize_dialogues

        hours = cfg.dialogue_hours or cfg.corpus_hours
        log.warning("dialogue corpus %s missing: synthesizing %.2f h", dialogues, hours)
        synthesize_dialogues(dialogues, hours=hours, voices=cfg.corpus_voices, seed=0,
                             show_progress=cfg.progress)
    log.warning("token dataset %s missing: tokenizing the dialogues of %s", cfg.tokens_dir, dialogues)
    return tokenize_dialogues(cfg.tokenizer_dir, dialogues, cfg.tokens_dir, user_lookahead(cfg),
                              show_progress=cfg.progress)


def ensure_text_lm(cfg: TrainConfig) -> Path:
    """The text LM at ``text_lm_dir`` (any local HF causal LM dir); trained when missing."""
    path = Path(cfg.text_lm_dir)
    if (path / META_FILE).is_file() or (path / "config.json").is_file():
        return path
    from speechlm.lm.textlm import train_text_lm

    log.warning("text LM %s missing: training one (%d steps)", path, cfg.text_lm_steps)
    return train_text_lm(path, steps=cfg.text_lm_steps, seed=0, preset=cfg.preset,
                         progress=cfg.progress)


def ensure_codec_tokens(cfg: TrainConfig, progress: bool = True) -> Path:
    """The codec token dataset at ``tokens_dir``; build corpus, semantic tokenizer (the
    distillation teacher and AudioLM's units) and codec when missing, then encode the corpus."""
    tokens = Path(cfg.tokens_dir)
    if (tokens / "meta.json").is_file():
        return tokens
    corpus, codec, tok = ensure_corpus(cfg, progress), Path(cfg.codec_dir), ensure_tokenizer(cfg)
    if not (codec / "config.json").is_file():
        from speechlm.tokenizers.codec.train import CodecTrainConfig, train_codec

        log.warning("codec %s missing: training one (default budget, distilled from %s)", codec, tok)
        threads = cfg.threads or os.cpu_count() or 1  # the recipe's, else every core (~10 min/2)
        train_codec(corpus, codec, CodecTrainConfig(distill=str(tok), threads=threads),
                    threads=threads, show_progress=progress)
    from speechlm.lm.codec.data import build_codec_dataset

    log.warning("codec token dataset %s missing: encoding %s", tokens, corpus)
    return build_codec_dataset(corpus, codec, tokens, tok, progress=progress)


def prepare_inputs(cfg: TrainConfig, source: str = "config", text_lm: bool = False) -> None:
    """Check, then build whatever of the recipe's inputs is missing (rank 0 only under DDP); the
    text LM when ``init: warm`` or when the recipe reads it (``text_lm``: its BPE tokenizer)."""
    from accelerate import PartialState

    if cfg.kind != "speech":
        raise ConfigError(f"{source}: kind={cfg.kind!r}; use `speechlm text-lm train` for text LMs")
    check_units_tokenizer(cfg, source)
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():  # only rank 0 builds; the others then find the outputs
        if cfg.codec_dir:
            if not cfg.tokens_dir:
                raise ConfigError(f"{source}: codec_dir needs tokens_dir (the codec token dataset)")
            ensure_codec_tokens(cfg, cfg.progress)
            return
        if cfg.tokens_dir is None or not (Path(cfg.tokens_dir) / "meta.json").is_file():
            ensure_units(cfg, cfg.progress)
        ensure_tokens(cfg, source)
        if cfg.init == "warm" or text_lm:
            ensure_text_lm(cfg)


def train(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    """Build missing inputs, then run ``cfg.recipe``; returns the run dir."""
    from speechlm.lm.recipes import load_recipe

    recipe = load_recipe(cfg, source)  # a bad recipe/sequence name fails before any input is built
    prepare_inputs(cfg, source, text_lm=getattr(recipe, "NEEDS_TEXT_LM", False))
    return recipe.run(cfg, resume=resume, source=source)


def train_from_config(config_path: str | Path | None, overrides: list[str] | None = None,
                      resume: bool = False) -> Path:
    """Same as ``speechlm train --config PATH key=value ... [--resume]``; returns the run dir."""
    cfg = load_config(TrainConfig, config_path, overrides or [])
    return train(cfg, resume=resume, source=str(config_path or "defaults"))
