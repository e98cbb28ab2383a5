"""A tiny text LM (byte-level BPE + Llama) so TWIST warm init is reproducible on a CPU.

``train_text_lm(out_dir)`` reads the public-domain texts shipped with speechlm (or ``text``),
splits them into sentences, holds out every 20th sentence for validation, trains a byte-level BPE
tokenizer (``tokenizers``) and a Llama LM with the same builder and loop as the speech LMs.
``out_dir`` is a model directory (``load_speech_lm(out_dir).kind == "text"``) that also holds
``tokenizer.json``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.core.seed import seed_everything
from speechlm.lm.checkpoints import ModelSpec
from speechlm.lm.config import TrainConfig
from speechlm.lm.loop import train_loop
from speechlm.lm.model import build_model, model_config
from speechlm.lm.modeldir import ModelMeta
from speechlm.lm.recipes.pretrain import loop_data
from speechlm.lm.streams import TokenSpace
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)

VALID_EVERY = 20


@dataclass(frozen=True)
class TextLMConfig:
    """Keys of ``speechlm text-lm train --config FILE.yaml`` (flags are shortcuts for them)."""

    out: str = ""                                # output model directory
    text: str | None = None                      # .txt file or folder (default: shipped books)
    steps: int = 400
    preset: Literal["tiny", "small", "base"] = "tiny"
    bpe_size: int = 2048
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int | None = None                   # torch threads (None: torch default)

    def validate(self) -> list[str]:
        bad = [] if self.out else ["out must be set (--out DIR or out=DIR)"]
        for key, low in (("steps", 1), ("bpe_size", 260), ("seq_len", 2), ("batch_size", 1)):
            if getattr(self, key) < low:
                bad.append(f"{key}={getattr(self, key)} must be >= {low}")
        if not self.lr > 0:
            bad.append(f"lr={self.lr} must be > 0")
        return bad

    def run(self, progress: bool = True) -> Path:
        """Train as configured; returns the model directory."""
        values = asdict(self)
        loop = {k: values.pop(k) for k in ("precision", "threads")}
        return train_text_lm(values.pop("out"), progress=progress, overrides=loop, **values)


def train_bpe(sentences: list[str], vocab_size: int, out_file: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sentences, trainer=trainer)
    tok.save(str(out_file))
    return tok


def text_lm_config(out_dir: str | Path, steps: int = 400, seed: int = 0, preset: str = "tiny",
                   seq_len: int = 128, batch_size: int = 16, lr: float = 2e-3,
                   progress: bool = True, **overrides) -> TrainConfig:
    """The loop settings of a text LM run (warmup and eval every tenth of the steps)."""
    cfg = TrainConfig(name="text-lm", kind="text", output_dir=str(out_dir), preset=preset,
                      max_steps=steps, seed=seed, lr=lr, seq_len=seq_len, batch_size=batch_size,
                      warmup_steps=max(1, steps // 10), eval_every=max(1, steps // 10),
                      save_every=steps, keep_last=1, progress=progress, tensorboard=False)
    cfg = replace(cfg, **overrides)
    problems = cfg.validate()
    if problems:
        raise ConfigError("text LM: " + "; ".join(problems))
    return cfg


def train_text_lm(out_dir: str | Path, text: str | Path | None = None, steps: int = 400,
                  seed: int = 0, preset: str = "tiny", bpe_size: int = 2048, seq_len: int = 128,
                  batch_size: int = 16, lr: float = 2e-3, progress: bool = True,
                  overrides: dict | None = None) -> Path:
    """Train BPE + text LM into ``out_dir`` (a loadable model dir); returns ``out_dir``."""
    from speechlm.data.synth import read_sentences, text_files_from

    out_dir = Path(out_dir)
    files = text_files_from(text)
    sentences = read_sentences(files, min_words=1, max_words=60)
    train_s = [s for i, s in enumerate(sentences) if i % VALID_EVERY]
    valid_s = [s for i, s in enumerate(sentences) if i % VALID_EVERY == 0]
    cfg = text_lm_config(out_dir, steps, seed, preset, seq_len, batch_size, lr, progress,
                         **(overrides or {}))
    seed_everything(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tok_file = Path(tmp) / "tokenizer.json"
        tok = train_bpe(train_s, bpe_size, tok_file)
        vocab = SpeechVocab.for_text(tok.get_vocab_size(), tokenizer="byte-level BPE",
                                     files=[f.name for f in files])
        space = TokenSpace.single(vocab, "text")
        encode = lambda ss: [np.asarray(e.ids, dtype=np.int64)[None] for e in tok.encode_batch(ss)]  # noqa: E731
        data = loop_data(cfg, space, {"train": encode(train_s), "valid": encode(valid_s)}, "text LM")
        model = build_model(model_config(preset, vocab, hidden_size=cfg.hidden_size,
                                         num_hidden_layers=cfg.num_layers,
                                         num_attention_heads=cfg.num_heads,
                                         intermediate_size=cfg.intermediate_size), seed)
        meta = ModelMeta.single("text", None, recipe="text-lm", seq_len=cfg.seq_len,
                                text=[str(f) for f in files], train_sentences=len(train_s),
                                valid_sentences=len(valid_s))
        log.info("text LM: %d train / %d valid sentences, %d BPE tokens", len(train_s), len(valid_s),
                 tok.get_vocab_size())
        train_loop(cfg, model, ModelSpec(vocab, meta, tok_file), data)
    return out_dir
