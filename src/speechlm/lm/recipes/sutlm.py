"""Joint speech–text LMs: SUTLM's speech / text / concat / interleave modes and SpiRit-LM.

``run(cfg)``: token dataset (units + word alignments) + the text LM's BPE -> joint vocabulary
(units | text | [TEXT] [SPEECH]) -> word-aligned utterances -> the ``sequence:`` builder of
:mod:`speechlm.lm.interleave.builders`, redrawn every epoch -> model (cold, or warm from the text
LM: SpiRit-LM continues a text LM, keeping its text embeddings) -> :func:`train_loop`. Every mode
uses the same vocabulary, so the recipes compare like for like and one evaluation reads them all.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from speechlm.core.errors import ConfigError, DataError
from speechlm.core.seed import seed_everything
from speechlm.lm.checkpoints import ModelSpec
from speechlm.lm.config import TrainConfig
from speechlm.lm.interleave import builders  # noqa: F401  (registers the builders)
from speechlm.lm.interleave.packing import EpochExamples
from speechlm.lm.interleave.tokens import align, joint_vocab, load_bpe, word_encoder
from speechlm.lm.loop import LoopData, train_loop
from speechlm.lm.modeldir import ModelMeta, StreamInfo
from speechlm.lm.packing import eval_blocks
from speechlm.lm.recipes.pretrain import build_model, dataset_space
from speechlm.lm.sequences import get_builder
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab
from speechlm.tokenizers.tokens import TokenDataset

log = logging.getLogger(__name__)

NEEDS_TEXT_LM = True  # the pipeline builds text_lm_dir first: its BPE is the text family


def joint_space(dataset: TokenDataset, cfg: TrainConfig, source: str) -> TokenSpace:
    if (cfg.streams and list(cfg.streams) != ["units"]) or cfg.layout != "flatten":
        raise ConfigError(f"{source}: recipe sutlm reads one units stream with layout flatten "
                          f"(streams={cfg.streams}, layout={cfg.layout})")
    units = dataset_space(dataset, replace(cfg, streams=["units"])).vocab
    text = SpeechVocab.load(cfg.text_lm_dir)
    return TokenSpace.single(joint_vocab(units, text), "units")


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    """Train a joint speech–text LM on ``units_dir`` (or ``tokens_dir``); returns the run dir."""
    seed_everything(cfg.seed)
    data_dir = cfg.tokens_dir or cfg.units_dir
    dataset = TokenDataset(data_dir)
    space = joint_space(dataset, cfg, source)
    builder = get_builder(cfg.sequence, space, cfg.stream_weights, cfg.sequence_options)
    encode = word_encoder(load_bpe(cfg.text_lm_dir))
    utts = {split: [align(r, encode) for r in dataset.split(split) if r.units.size]
            for split in ("train", "valid", "test") if split in dataset.splits}
    if not utts.get("train"):
        raise DataError(f"{data_dir}/data/train.parquet: no utterances with units")
    held = {split: eval_blocks(builder.draw(utts[split], cfg.seed, 0), cfg.seq_len,
                               space.vocab.pad_id, cfg.eval_blocks, f"{data_dir}/{split}")
            if utts.get(split) else None for split in ("valid", "test")}
    train = EpochExamples(lambda epoch: builder.draw(utts["train"], cfg.seed, epoch), cfg.seq_len,
                          cfg.seed, source=cfg.name)
    model = build_model(cfg, space, source)
    units = dataset.stream("units")
    meta = ModelMeta("speech", (StreamInfo("units", units.tokenizer, units.frame_rate),), "flatten",
                     None, cfg.seq_len, cfg.sequence, cfg.init, cfg.name,
                     extra={"units_dir": str(Path(data_dir).resolve()),
                            "text_lm_dir": str(Path(cfg.text_lm_dir).resolve()),
                            "sequence_options": builder.options})
    log.info("%s: %d train utterances, %d blocks per epoch", cfg.name, len(utts["train"]),
             train.blocks_per_epoch)
    spec = ModelSpec(space.vocab, meta, Path(cfg.text_lm_dir) / "tokenizer.json")
    return train_loop(cfg, model, spec, LoopData(train, held["valid"], held["test"]), resume=resume)
