"""Speech-only pretraining (GSLM cold init, TWIST warm init) on a token dataset of any K streams.

``run(cfg)``: token dataset -> token space (streams + layout) -> sequence builder examples ->
packed blocks -> model (cold, or warm from ``text_lm_dir``) -> :func:`train_loop`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from speechlm.core.errors import ConfigError, DataError
from speechlm.core.seed import seed_everything
from speechlm.lm.checkpoints import ModelSpec
from speechlm.lm.config import TrainConfig
from speechlm.lm.layout import get_layout
from speechlm.lm.loop import LoopData, train_loop
from speechlm.lm.modeldir import ModelMeta, StreamInfo
from speechlm.lm.packing import PackedExamples, eval_blocks
from speechlm.lm.sequences import get_builder
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab
from speechlm.tokenizers.tokens import TokenDataset

log = logging.getLogger(__name__)


def loop_data(cfg: TrainConfig, space: TokenSpace, splits: dict[str, Sequence[np.ndarray]],
              source: str) -> LoopData:
    """``{split: (K, T) records}`` -> packed train blocks + valid/test batches, via ``cfg.sequence``."""
    builder = get_builder(cfg.sequence, space, cfg.stream_weights, cfg.sequence_options)
    train = builder.examples(splits["train"], f"{source}/train")
    if not train:
        raise DataError(f"{source}/train: no utterances with units")
    held = {}
    for split in ("valid", "test"):
        records = splits.get(split)
        held[split] = eval_blocks(builder.examples(records, f"{source}/{split}"), cfg.seq_len,
                                  space.vocab.pad_id, cfg.eval_blocks, f"{source}/{split}") \
            if records else None
    return LoopData(PackedExamples(train, cfg.seq_len, cfg.seed, source=cfg.name),
                    held["valid"], held["test"])


def read_splits(dataset: TokenDataset, streams: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Records of train, valid and (when the dataset has it) test, as (K, T) arrays."""
    splits = {split: dataset.streams(split, streams) for split in ("train", "valid")}
    if "test" in dataset.splits:
        splits["test"] = dataset.streams("test", streams)
    else:
        log.warning("%s has no test split: the run reports no test loss (model selection uses "
                    "valid)", dataset.path)
    return splits


def dataset_space(dataset: TokenDataset, cfg: TrainConfig) -> TokenSpace:
    """The token space of ``cfg.streams`` of a dataset, read through ``cfg.layout``: one vocabulary
    family per stream (recorded with the model, checked on resume)."""
    names = list(cfg.streams or dataset.stream_names)
    units = dataset.stream("units")
    vocab = SpeechVocab.for_units(units.vocab_size, tokenizer=str(dataset.tokenizer_dir),
                                  frame_rate=units.frame_rate, dedup=dataset.dedup)
    for name in names[1:]:
        spec = dataset.stream(name)
        vocab = vocab.add_family(name, spec.vocab_size, kind=spec.kind, frame_rate=spec.frame_rate,
                                 tokenizer=spec.tokenizer, derived=spec.derived)
    return TokenSpace(vocab, tuple(names), get_layout(cfg.layout, len(names), cfg.delays))


def build_model(cfg: TrainConfig, space: TokenSpace, source: str) -> torch.nn.Module:
    """Cold init from the preset (+ overrides), or warm init (TWIST) from ``text_lm_dir``."""
    if cfg.depth_layers and space.n_rows == 1:
        raise ConfigError(f"{source}: depth_layers={cfg.depth_layers} needs several model rows "
                          f"(layout={cfg.layout} over {space.n_streams} stream(s) gives one)")
    unread = [space.streams.index(name) for name in cfg.unread_streams or ()]
    if unread and space.n_rows != space.n_streams:
        raise ConfigError(f"{source}: unread_streams needs one model row per stream "
                          f"(layout={cfg.layout} gives {space.n_rows} rows)")
    if cfg.init == "warm":
        from speechlm.lm.init.warm import warm_init

        overrides = [k for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size")
                     if getattr(cfg, k)]
        if overrides:
            raise ConfigError(f"{source}: {', '.join(overrides)} cannot be set with init=warm "
                              f"(the architecture comes from text_lm_dir={cfg.text_lm_dir})")
        model = warm_init(cfg.text_lm_dir, space, seed=cfg.seed, embed_init=cfg.embed_init,
                          depth_layers=cfg.depth_layers, unread_rows=unread)
    else:
        from speechlm.lm.init.cold import cold_init

        model = cold_init(space, cfg.preset, cfg.seed, cfg.depth_layers, unread,
                          hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                          num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size)
    if cfg.seq_len > model.config.max_position_embeddings:
        raise ConfigError(f"{source}: seq_len={cfg.seq_len} exceeds the model's "
                          f"max_position_embeddings={model.config.max_position_embeddings}")
    return model


def run(cfg: TrainConfig, resume: bool = False, source: str = "config",
        meta_extra: dict | None = None) -> Path:
    """Train a speech LM on ``cfg.tokens_dir`` (or ``units_dir``); returns the run dir.
    ``meta_extra`` adds what a recipe records in ``speechlm.json`` (and every checkpoint)."""
    seed_everything(cfg.seed)
    if cfg.kind != "speech":
        raise ConfigError(f"{source}: kind={cfg.kind!r}; use `speechlm text-lm train` for text LMs")
    data_dir = cfg.tokens_dir or cfg.units_dir
    dataset = TokenDataset(data_dir)
    space = dataset_space(dataset, cfg)
    data = loop_data(cfg, space, read_splits(dataset, space.streams), f"{data_dir}/data")
    model = build_model(cfg, space, source)
    streams = tuple(StreamInfo(name, dataset.stream(name).tokenizer, dataset.stream(name).frame_rate)
                    for name in space.streams)
    meta = ModelMeta("speech", streams, space.layout.name, space.layout.delays or None,
                     cfg.seq_len, cfg.sequence, cfg.init, cfg.name,
                     extra={"units_dir": str(Path(data_dir).resolve()),
                            "text_lm_dir": str(Path(cfg.text_lm_dir).resolve())
                            if cfg.init == "warm" else None,
                            "sampling": {"temperature": cfg.sample_temperature, "top_k": cfg.sample_top_k},
                            **(meta_extra or {})})
    return train_loop(cfg, model, ModelSpec(space.vocab, meta), data, resume=resume)
