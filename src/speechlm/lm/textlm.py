"""A tiny text LM (byte-level BPE + Llama) so TWIST warm init is reproducible on a CPU.

``train_text_lm(out_dir)`` reads the public-domain texts shipped with speechlm (or ``text``),
splits them into sentences, holds out every 20th sentence for validation, trains a byte-level BPE
tokenizer (``tokenizers``) and a Llama LM with the same loop as the speech LMs. ``out_dir`` is a
model directory (``load_speech_lm(out_dir).kind == "text"``) that also holds ``tokenizer.json``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from speechlm.core.seed import seed_everything
from speechlm.lm.model import build_model, model_config
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)

VALID_EVERY = 20


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


def train_text_lm(out_dir: str | Path, text: str | Path | None = None, steps: int = 400,
                  seed: int = 0, preset: str = "tiny", bpe_size: int = 2048, seq_len: int = 128,
                  batch_size: int = 16, lr: float = 2e-3, progress: bool = True,
                  overrides: dict | None = None) -> Path:
    """Train BPE + text LM into ``out_dir`` (a loadable model dir); returns ``out_dir``."""
    from speechlm.data.synth import read_sentences, text_files_from
    from speechlm.lm.data import to_token_ids
    from speechlm.lm.train import ModelSpec, TrainConfig, train_loop

    out_dir = Path(out_dir)
    files = text_files_from(text)
    sentences = read_sentences(files, min_words=1, max_words=60)
    train_s = [s for i, s in enumerate(sentences) if i % VALID_EVERY]
    valid_s = [s for i, s in enumerate(sentences) if i % VALID_EVERY == 0]
    seed_everything(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tok_file = Path(tmp) / "tokenizer.json"
        tok = train_bpe(train_s, bpe_size, tok_file)
        vocab = SpeechVocab.for_text(tok.get_vocab_size(), tokenizer="byte-level BPE",
                                     files=[f.name for f in files])
        encode = lambda ss: [np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(ss)]  # noqa: E731
        train = to_token_ids(encode(train_s), vocab, "text", "text LM train")
        valid = to_token_ids(encode(valid_s), vocab, "text", "text LM valid")
        cfg = TrainConfig(name="text-lm", kind="text", output_dir=str(out_dir), preset=preset,
                          max_steps=steps, seed=seed, lr=lr, seq_len=seq_len, batch_size=batch_size,
                          warmup_steps=max(1, steps // 10), eval_every=max(1, steps // 10),
                          save_every=steps, keep_last=1, progress=progress, tensorboard=False,
                          **(overrides or {}))
        problems = cfg.validate()
        if problems:
            from speechlm.core.errors import ConfigError

            raise ConfigError("text LM: " + "; ".join(problems))
        model = build_model(model_config(preset, vocab, hidden_size=cfg.hidden_size,
                                         num_hidden_layers=cfg.num_layers,
                                         num_attention_heads=cfg.num_heads,
                                         intermediate_size=cfg.intermediate_size), seed)
        spec = ModelSpec(vocab=vocab, kind="text", tokenizer_dir=None,
                         extra={"recipe": "text-lm", "seq_len": cfg.seq_len,
                                "text": [str(f) for f in files],
                                "train_sentences": len(train_s), "valid_sentences": len(valid_s)},
                         text_tokenizer_file=tok_file)
        log.info("text LM: %d train / %d valid sentences, %d BPE tokens", len(train_s), len(valid_s),
                 tok.get_vocab_size())
        train_loop(cfg, model, spec, train, valid)
    return out_dir
