"""Training codec LMs with the generic loop: the autoregressive models of every layout (one run
dir each) and VALL-E's NAR model. The recipes (``codec_lm``, ``valle``, ``audiolm``) compose these.

Model directories record, besides the usual ``speechlm.json``, ``extra``: ``codec_dir``,
``codebooks`` (which codebooks of the codec the streams are), ``tasks``, ``frames_per_phoneme``
(the TTS length model) and ``role`` (``ar``, ``nar``, ``semantic``), which
:mod:`speechlm.generation.codec_tts` reads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.core.seed import seed_everything
from speechlm.lm.checkpoints import ModelSpec
from speechlm.lm.codec.data import CodecDataset, CodecRecord
from speechlm.lm.codec.sequences import (PHONEMES, TASK_FAMILY, UNITS, CodecPromptedBuilder,
                                         LengthModel, PaddedExamples, codec_family, codec_vocab,
                                         crop, nar_example, nar_loss, padded_batch,
                                         prompt_partner, task_prefix)
from speechlm.lm.config import TrainConfig
from speechlm.lm.layout import get_layout
from speechlm.lm.loop import LoopData, train_loop
from speechlm.lm.modeldir import ModelMeta, StreamInfo
from speechlm.lm.packing import PackedExamples, eval_blocks
from speechlm.lm.recipes.pretrain import build_model
from speechlm.lm.streams import TokenSpace

log = logging.getLogger(__name__)


def load_dataset(cfg: TrainConfig, source: str) -> tuple[CodecDataset, dict[str, list[CodecRecord]]]:
    if not cfg.tokens_dir:
        raise ConfigError(f"{source}: codec recipes need tokens_dir (a codec token dataset)")
    dataset = CodecDataset(cfg.tokens_dir)
    splits = {s: dataset.records(s) for s in ("train", "valid", "test") if s in dataset.splits}
    return dataset, splits


def n_codebooks(cfg: TrainConfig, dataset: CodecDataset) -> int:
    have = dataset.meta["n_codebooks"]
    if cfg.codebooks is not None and cfg.codebooks > have:
        raise ConfigError(f"codebooks={cfg.codebooks}: {cfg.tokens_dir} has {have}")
    return cfg.codebooks or have


def prompt_frames(cfg: TrainConfig, dataset: CodecDataset) -> int:
    return max(1, int(round(cfg.prompt_seconds * dataset.meta["frame_rate"])))


def make_space(dataset: CodecDataset, streams: Sequence[str], layout: str,
               delays: Sequence[int] | None, prefix: Sequence[str]) -> TokenSpace:
    return TokenSpace(codec_vocab(dataset), tuple(streams), get_layout(layout, len(streams), delays),
                      tuple(prefix))


def prefix_families(tasks: Sequence[str]) -> tuple[str, ...]:
    return (TASK_FAMILY,) + ((PHONEMES,) if {"tts", "asr"} & set(tasks) else ()) + \
        ((UNITS,) if "semantic" in tasks else ())


def model_meta(cfg: TrainConfig, dataset: CodecDataset, space: TokenSpace, sequence: str,
               **extra) -> ModelMeta:
    streams = tuple(StreamInfo(name, dataset.meta["codec"] if name.startswith("codec_")
                               else dataset.meta["tokenizer"], dataset.meta["frame_rate"])
                    for name in space.streams)
    return ModelMeta("speech", streams, space.layout.name, space.layout.delays or None, cfg.seq_len,
                     sequence, cfg.init, cfg.name, prefix=space.prefix,
                     extra={"codec_dir": dataset.meta["codec"], "tokens_dir": str(dataset.path.resolve()),
                            "language": dataset.meta.get("language"), **extra})


def _loop_data(examples: dict[str, list], cfg: TrainConfig, pad_id: int, source: str) -> LoopData:
    held = {split: eval_blocks(examples[split], cfg.seq_len, pad_id, cfg.eval_blocks, f"{source}/{split}")
            if examples.get(split) else None for split in ("valid", "test")}
    return LoopData(PackedExamples(examples["train"], cfg.seq_len, cfg.seed, source=cfg.name),
                    held["valid"], held["test"])


def train_ar(cfg: TrainConfig, streams: Sequence[str], tasks: Sequence[str], role: str,
             resume: bool, source: str, codebook_index: Sequence[int] | None = None) -> Path:
    """An autoregressive codec LM over ``streams`` (codec families, or ``units``) in ``cfg.layout``,
    trained on ``tasks`` (several: VioLA's task token picks one); returns the run dir."""
    seed_everything(cfg.seed)
    dataset, splits = load_dataset(cfg, source)
    space = make_space(dataset, streams, cfg.layout, cfg.delays, prefix_families(tasks))
    builder = CodecPromptedBuilder(space)
    builder.tasks, builder.seed = tuple(tasks), cfg.seed
    builder.prompt_frames = prompt_frames(cfg, dataset)
    builder.streams = tuple(codebook_index) if codebook_index is not None else None
    if streams == (UNITS,):
        records = {s: [replace(r, codes=r.units[None]) for r in recs] for s, recs in splits.items()}
    else:
        records = splits
    examples = {s: builder.records_examples(recs, f"{cfg.tokens_dir}/{s}") for s, recs in records.items()}
    model = build_model(cfg, space, source)
    meta = model_meta(cfg, dataset, space, "codec_prompted", role=role, tasks=list(tasks),
                      codebooks=list(codebook_index) if codebook_index is not None else None,
                      frames_per_phoneme=LengthModel.fit(splits["train"]).frames_per_phoneme,
                      prompt_seconds=cfg.prompt_seconds)
    return train_loop(cfg, model, ModelSpec(space.vocab, meta),
                      _loop_data(examples, cfg, space.vocab.pad_id, f"{cfg.tokens_dir}"), resume=resume)


def nar_examples(space: TokenSpace, records: Sequence[CodecRecord], first_stage: int, task: str,
                 prompt_frames: int, seed: int, source: str) -> list:
    """One example per record and stage ``first_stage..K-1`` (each stage sees every utterance)."""
    rng = np.random.default_rng(seed)
    partner = prompt_partner(records, seed)
    K = space.n_streams
    out = []
    for i, rec in enumerate(records):
        prompt = None
        if task == "tts" and partner[i] is not None:
            prompt = crop(records[partner[i]].codes[:K], prompt_frames, rng)
        for stage in range(first_stage, K):
            out.append(nar_example(space, task_prefix(task, rec), rec.codes[:K], prompt, stage,
                                   f"{source}: {rec.id}"))
    return out


def train_nar(cfg: TrainConfig, task: str, first_stage: int, resume: bool, source: str) -> Path:
    """VALL-E's NAR model (bidirectional, parallel layout) for codebooks ``first_stage..K-1``,
    conditioned on ``task``'s prefix (``tts``: phonemes and a prompt of the same speaker;
    ``continue``: the codebooks below only, AudioLM's fine stage); returns the run dir."""
    seed_everything(cfg.seed)
    dataset, splits = load_dataset(cfg, source)
    K = n_codebooks(cfg, dataset)
    streams = [codec_family(k) for k in range(K)]
    space = make_space(dataset, streams, "parallel", None, prefix_families([task]))
    examples = {s: nar_examples(space, recs, first_stage, task, prompt_frames(cfg, dataset),
                                cfg.seed, f"{cfg.tokens_dir}/{s}") for s, recs in splits.items()}
    pad = space.vocab.pad_id
    cap = max(e.input_ids.shape[1] for recs in examples.values() for e in recs)
    cfg = replace(cfg, layout="parallel", delays=None, depth_layers=0, seq_len=max(cfg.seq_len, cap))
    held = {s: padded_batch(examples[s][:cfg.eval_blocks], pad) if examples.get(s) else None
            for s in ("valid", "test")}
    data = LoopData(PaddedExamples(examples["train"], pad, cfg.seed, cfg.seq_len), held["valid"],
                    held["test"])
    model = build_model(cfg, space, source)
    meta = model_meta(cfg, dataset, space, "codec_nar", role="nar", tasks=[task],
                      first_stage=first_stage, prompt_seconds=cfg.prompt_seconds)
    return train_loop(cfg, model, ModelSpec(space.vocab, meta), data, resume=resume,
                      loss_fn=partial(nar_loss, pad_id=pad))
