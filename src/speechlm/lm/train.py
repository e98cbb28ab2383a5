"""Training core for speech and text LMs on HF Accelerate: one flat loop, exact resume.

``train_from_config(path, overrides)`` = ``speechlm train --config path key=value ...``:
load and check the recipe, build missing inputs (corpus -> tokenizer -> units, text LM), build the
model (cold or warm), then :func:`train_loop`. A run directory holds::

    config.yaml            resolved config
    metrics.jsonl          one record per logged step: step, loss, lr, grad_norm, tok_s (+ valid_loss)
    tb/                    TensorBoard events
    loss.png               loss curves (train, valid)
    checkpoint-<step>/     HF model dir + trainer_state.pt (optimizer, scheduler, RNG) + trainer_state.json
    best/                  model dir with the lowest validation loss so far (keep_best: true)
    best.json              best_valid_loss, best_step, final_model, last_valid_loss
    config.json, model.safetensors, speech_vocab.json, speechlm.json   the final model
                           (final_model: best -> the best/ model, last -> the last checkpoint)

One process by default; ``accelerate launch --num_processes N -m speechlm train ...`` runs DDP
(gloo on CPU, NCCL on GPU): each rank takes its own blocks of every global batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from speechlm.core.checkpoint import (atomic_dir, checkpoint_name, clean_temp, latest_checkpoint,
                                      list_checkpoints, prune_checkpoints)
from speechlm.core.config import config_to_dict, load_config, save_config
from speechlm.core.files import atomic_file, atomic_write_json
from speechlm.core.errors import CheckpointError, ConfigError, DataError, TrainingError
from speechlm.core.progress import progress_bar
from speechlm.core.seed import rng_state, seed_everything, set_rng_state
from speechlm.core.threads import torch_threads
from speechlm.lm.data import PackedBlocks, to_token_ids, valid_blocks
from speechlm.lm.model import META_FILE, count_params, write_model_dir
from speechlm.lm.vocab import SpeechVocab
from speechlm.tokenizers.tokens import TokenDataset

log = logging.getLogger(__name__)

STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
BEST_DIR = "best"
BEST_JSON = "best.json"


@dataclass(frozen=True)
class TrainConfig:
    """Every recipe key. Paths are relative to the working directory."""

    name: str = "run"
    kind: Literal["speech", "text"] = "speech"
    init: Literal["cold", "warm"] = "cold"        # warm = TWIST from text_lm_dir
    # data locations (built when missing)
    corpus_dir: str = "work/corpus"
    corpus_hours: float = 0.5
    corpus_voices: int = 12
    tokenizer_dir: str = "work/tokenizer"
    tokenizer_features: str = "ssl-tiny"
    tokenizer_units: int = 100
    units_dir: str = "work/units"
    text_lm_dir: str = "work/text-lm"
    text_lm_steps: int = 400
    output_dir: str = "runs/run"
    # model
    preset: Literal["tiny", "small", "base"] = "tiny"
    hidden_size: int | None = None               # overrides of the preset (cold init only)
    num_layers: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    embed_init: Literal["mean", "random"] = "mean"
    # optimization
    max_steps: int = 300
    seed: int = 0
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    batch_size: int = 16                         # blocks per process per micro-step
    grad_accum: int = 1
    seq_len: int = 128
    clip_grad: float = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # auto: bf16 on GPU, fp32 on CPU
    attention: Literal["auto", "sdpa", "eager"] = "auto"  # HF attention kernel while training
    compile: bool = False
    threads: int | None = None                   # torch intra-op threads (None: torch default)
    # evaluation, logging, checkpoints
    log_every: int = 1
    eval_every: int = 50
    eval_blocks: int = 64
    keep_best: bool = True                       # keep best/ = model with the lowest valid loss
    final_model: Literal["best", "last"] = "last"   # what the run dir's model files are
    save_every: int = 100
    keep_last: int = 2
    tensorboard: bool = True
    progress: bool = True
    plot: bool = True

    def validate(self) -> list[str]:
        bad = []
        positive = ("max_steps", "batch_size", "grad_accum", "seq_len", "log_every", "eval_every",
                    "eval_blocks", "save_every", "keep_last", "tokenizer_units", "text_lm_steps")
        for key in positive:
            if getattr(self, key) < 1:
                bad.append(f"{key}={getattr(self, key)} must be >= 1")
        for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "threads"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                bad.append(f"{key}={getattr(self, key)} must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad.append(f"lr={self.lr} must be a positive number")
        if not 0 <= self.min_lr_ratio <= 1:
            bad.append(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.clip_grad < 0:
            bad.append("warmup_steps, weight_decay and clip_grad must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            bad.append(f"beta1={self.beta1}, beta2={self.beta2} must be in [0, 1)")
        if self.corpus_hours <= 0 or self.corpus_voices < 1:
            bad.append(f"corpus_hours={self.corpus_hours} must be > 0, corpus_voices >= 1")
        if not self.output_dir:
            bad.append("output_dir must not be empty")
        if self.final_model == "best" and not self.keep_best:
            bad.append("final_model=best needs keep_best=true")
        if self.init == "warm" and self.kind == "text":
            bad.append("init=warm is for speech LMs (kind=speech)")
        return bad


# ---------------------------------------------------------------- data preparation


def ensure_units(cfg: TrainConfig) -> Path:
    """The token dataset at ``units_dir``; build corpus, tokenizer and units when missing."""
    units = Path(cfg.units_dir)
    if (units / "meta.json").is_file():
        return units
    corpus, tok = Path(cfg.corpus_dir), Path(cfg.tokenizer_dir)
    if not (corpus / "meta.json").is_file():
        from speechlm.data.synth import synthesize_corpus

        log.warning("corpus %s missing: synthesizing %.2f h", corpus, cfg.corpus_hours)
        synthesize_corpus(corpus, hours=cfg.corpus_hours, voices=cfg.corpus_voices, seed=0,
                          show_progress=cfg.progress)
    from speechlm.tokenizers import tokenize_corpus, train_tokenizer  # lazy: a sibling stage

    if not (tok / "config.json").is_file():
        log.warning("tokenizer %s missing: training %s with %d units", tok, cfg.tokenizer_features,
                    cfg.tokenizer_units)
        train_tokenizer(corpus, tok, features=cfg.tokenizer_features, units=cfg.tokenizer_units,
                        seed=0)
    log.warning("token dataset %s missing: tokenizing %s", units, corpus)
    tokenize_corpus(tok, corpus, units)
    return units


def ensure_text_lm(cfg: TrainConfig) -> Path:
    path = Path(cfg.text_lm_dir)
    if (path / META_FILE).is_file() or (path / "config.json").is_file():
        return path
    from speechlm.lm.textlm import train_text_lm

    log.warning("text LM %s missing: training one (%d steps)", path, cfg.text_lm_steps)
    return train_text_lm(path, steps=cfg.text_lm_steps, seed=0, preset=cfg.preset,
                         progress=cfg.progress)


def speech_data(cfg: TrainConfig) -> tuple[SpeechVocab, list[np.ndarray], list[np.ndarray], dict]:
    units_dir = ensure_units(cfg)
    data = TokenDataset(units_dir)
    vocab = SpeechVocab.for_units(data.vocab_size, tokenizer=str(data.tokenizer_dir),
                                  frame_rate=data.frame_rate, dedup=data.dedup)
    train = to_token_ids(data.units("train"), vocab, "units", f"{units_dir}/data/train.parquet")
    valid = to_token_ids(data.units("valid"), vocab, "units", f"{units_dir}/data/valid.parquet")
    if not train:
        raise DataError(f"{units_dir}/data/train.parquet: no utterances with units")
    return vocab, train, valid, data.meta


# ---------------------------------------------------------------- the loop


def lm_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over ``labels[:, 1:]`` (``-100`` ignored).

    Computed here instead of ``model(labels=...)``: no attention mask is passed (packed causal
    blocks, so SDPA runs with ``is_causal`` and no mask is built) and the loss takes the shifted
    views without HF's padded label copy. Same value as HF's loss; under ``torch.compile`` model
    and loss are one graph with no breaks (``torch._dynamo.explain``), so the loss's softmax and
    gather fuse with the rest. Works through DDP/compile wrappers (only ``forward`` is called).
    """
    logits = model(input_ids=input_ids, use_cache=False).logits[:, :-1]  # (B, T-1, V)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warmup to 1, then cosine down to ``min_lr_ratio`` at ``max_steps``."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; matrices decay, norms/biases don't. Fused kernel where available, else foreach."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


@dataclass
class ModelSpec:
    """What a saved model directory records besides the weights."""

    vocab: SpeechVocab
    kind: str
    tokenizer_dir: str | None
    extra: dict[str, Any]
    text_tokenizer_file: Path | None = None


def _write_metrics(path: Path, keep_until: int) -> None:
    """Drop records after step ``keep_until`` (left by a killed run) before appending again."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= keep_until]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, spec: ModelSpec,
                    optimizer: torch.optim.Optimizer, scheduler: Any, cursor: int,
                    keep_last: int) -> Path:
    """Atomic checkpoint: model dir + optimizer/scheduler/RNG + data position."""
    final = run_dir / checkpoint_name(step)
    with atomic_dir(final) as tmp:
        write_model_dir(tmp, model, spec.vocab, spec.kind, spec.tokenizer_dir, spec.extra,
                        spec.text_tokenizer_file)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, tmp / STATE_PT)
        (tmp / STATE_JSON).write_text(json.dumps({"step": step, "cursor": cursor}), encoding="utf-8")
    prune_checkpoints(run_dir, keep_last)
    return final


def load_checkpoint(ckpt: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, vocab: SpeechVocab) -> tuple[int, int]:
    """Restore weights, optimizer, scheduler, RNG; returns ``(step, cursor)``."""
    from safetensors.torch import load_file

    try:
        saved_vocab = SpeechVocab.load(ckpt)
        state = torch.load(ckpt / STATE_PT, weights_only=True, map_location="cpu")
        info = json.loads((ckpt / STATE_JSON).read_text(encoding="utf-8"))
        weights = load_file(ckpt / "model.safetensors")
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{ckpt}: cannot resume ({type(err).__name__}: {err})") from None
    if saved_vocab.to_dict() != vocab.to_dict():
        raise CheckpointError(f"{ckpt}: vocabulary ({saved_vocab.size} tokens, families "
                              f"{saved_vocab.names}) differs from this run's data ({vocab.size} "
                              f"tokens, {vocab.names}); was the tokenizer retrained?")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise CheckpointError(f"{ckpt}: weights do not match the model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(info["step"]), int(info["cursor"])


def _debug_kill(step: int) -> None:
    """Tests: ``SPEECHLM_KILL_AT_STEP=N`` SIGKILLs this process right after step N."""
    at = os.environ.get("SPEECHLM_KILL_AT_STEP")
    if at is not None and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def native_bf16() -> bool:
    """Whether this machine multiplies bf16 in hardware: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX (elsewhere torch emulates bf16 on CPU, slower than fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(cfg: TrainConfig) -> Literal["fp32", "bf16"]:
    """``auto``: bf16 autocast on GPU; fp32 on CPU, so CPU results do not depend on the CPU model."""
    if cfg.precision == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    if cfg.precision == "bf16" and not native_bf16():
        log.warning("%s: precision=bf16 but this machine has no native bf16 (no AVX512-BF16/AMX "
                    "CPU or bf16 GPU): it is emulated and likely slower than fp32", cfg.name)
    return cfg.precision


# Longest block for which CPU bf16 training uses HF's math ("eager") attention. Measured here
# (benchmarks/train_throughput.py, "attention_kernels" in its JSON; one layer, forward + backward):
# torch's CPU flash kernel, which HF's default "sdpa" reaches, takes 3.3-3.4x the time of HF's
# math kernel in bf16 at 128 tokens and 1.6-1.7x at 256; at 512 the two are about even (0.95-1.36
# across runs), at 1024 the flash kernel wins, and in fp32 it is never slower.
CPU_BF16_EAGER_MAX_LEN = 256


def resolve_attention(cfg: TrainConfig, precision: str) -> Literal["sdpa", "eager"]:
    """The HF attention implementation to train with (``attention: auto`` picks by the rule above)."""
    if cfg.attention != "auto":
        return cfg.attention
    cpu_bf16 = precision == "bf16" and not torch.cuda.is_available()
    return "eager" if cpu_bf16 and cfg.seq_len <= CPU_BF16_EAGER_MAX_LEN else "sdpa"


@contextlib.contextmanager
def attention_implementation(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Train with attention kernel ``name``; the model gets its own back after (not saved in
    config.json either way, so checkpoints load with the default kernel)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def train_loop(cfg: TrainConfig, model: torch.nn.Module, spec: ModelSpec,
               train_seqs: list[np.ndarray], valid_seqs: list[np.ndarray],
               resume: bool = False) -> Path:
    """Train ``model`` on packed ``train_seqs``; returns the run dir (also the final model dir).

    Runs with ``cfg.threads`` torch threads and the training attention kernel, and restores both
    for the caller afterwards.
    """
    precision = resolve_precision(cfg)
    with torch_threads(cfg.threads), attention_implementation(model, resolve_attention(cfg, precision)):
        return _train(cfg, model, spec, train_seqs, valid_seqs, resume, precision)


def _train(cfg: TrainConfig, model: torch.nn.Module, spec: ModelSpec, train_seqs: list[np.ndarray],
           valid_seqs: list[np.ndarray], resume: bool, precision: str) -> Path:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    run_dir = Path(cfg.output_dir)
    cuda = torch.cuda.is_available()
    # Accelerate keeps one process-wide state and refuses a second run with another precision in
    # the same process; each run sets its own (as HF's TrainingArguments does). The distributed
    # (partial) state is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", cpu=not cuda)
    main, world, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    vocab = spec.vocab
    data = PackedBlocks(train_seqs, cfg.seq_len, vocab.eos_id, cfg.seed, source=cfg.name)
    v_ids, v_labels = valid_blocks(valid_seqs, cfg.seq_len, vocab.eos_id, vocab.pad_id,
                                   max_blocks=cfg.eval_blocks) if valid_seqs else (None, None)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))

    step, cursor = 0, 0
    metrics_path = run_dir / "metrics.jsonl"
    ckpt = latest_checkpoint(run_dir) if resume else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        clean_temp(run_dir)
        if not resume:
            for old in list_checkpoints(run_dir):
                shutil.rmtree(old)
            for name in ("metrics.jsonl", "tb", BEST_DIR, BEST_JSON):
                p = run_dir / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        elif ckpt is None:
            log.warning("--resume: no checkpoint in %s, starting from step 0", run_dir)
    accelerator.wait_for_everyone()
    if ckpt is not None:
        step, cursor = load_checkpoint(ckpt, model, optimizer, scheduler, vocab)
        log.info("resumed from %s (step %d)", ckpt, step)
    if main:
        _write_metrics(metrics_path, step)
        # resolved: what "auto" became on this machine, so the run can be repeated elsewhere
        save_config(replace(cfg, precision=precision, attention=model.config._attn_implementation),
                    run_dir / "config.yaml")
    if step >= cfg.max_steps:
        log.warning("%s: already at step %d >= max_steps=%d", run_dir, step, cfg.max_steps)

    model, optimizer = accelerator.prepare(model, optimizer)
    # compile model + loss as one function (the model is an argument, so dynamo guards on it)
    loss_fn = torch.compile(lm_loss) if cfg.compile else lm_loss
    model.train()
    device = accelerator.device
    tokens_per_step = cfg.batch_size * cfg.grad_accum * world * cfg.seq_len
    writer = None
    if main and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step + 1 if step else None)
    if main:
        log.info("%s: %d params, %d train blocks/epoch (%d tokens), %d tokens/step, %d process(es), "
                 "%s, %s attention", cfg.name, count_params(accelerator.unwrap_model(model)),
                 data.blocks_per_epoch, data.tokens, tokens_per_step, world, precision,
                 accelerator.unwrap_model(model).config._attn_implementation)

    def evaluate() -> float:
        """Token-weighted mean loss over the validation blocks (sharded across ranks)."""
        net = accelerator.unwrap_model(model)  # no DDP hooks: ranks run different batch counts
        net.eval()
        total = torch.zeros(2, dtype=torch.float64, device=device)
        with torch.no_grad():
            for start in range(rank * cfg.batch_size, len(v_ids), world * cfg.batch_size):
                ids = v_ids[start:start + cfg.batch_size].to(device)
                lab = v_labels[start:start + cfg.batch_size].to(device)
                n = (lab[:, 1:] != -100).sum()
                with accelerator.autocast():
                    total[0] += lm_loss(net, ids, lab).double() * n
                total[1] += n
        total = accelerator.reduce(total, "sum")
        net.train()
        return float(total[0] / total[1].clamp(min=1))

    # best model so far; kept across --resume (an exact resume re-finds the same losses)
    best_path = run_dir / BEST_JSON
    best = (json.loads(best_path.read_text(encoding="utf-8")) if resume and best_path.is_file()
            else {"best_valid_loss": None, "best_step": None})

    def update_best(valid_loss: float) -> None:
        """Save ``best/`` (atomic) when ``valid_loss`` is the lowest so far; write best.json."""
        if best["best_valid_loss"] is None or valid_loss < best["best_valid_loss"]:
            best.update(best_valid_loss=valid_loss, best_step=step)
            with atomic_dir(run_dir / BEST_DIR) as tmp:
                write_model_dir(tmp, accelerator.unwrap_model(model), spec.vocab, spec.kind,
                                spec.tokenizer_dir, spec.extra, spec.text_tokenizer_file)
        best.update(last_valid_loss=valid_loss, last_eval_step=step, final_model=cfg.final_model)
        atomic_write_json(best_path, best, indent=1)

    last_good = latest_checkpoint(run_dir)
    fh = open(metrics_path, "a", encoding="utf-8") if main else None
    t_last, tok_since = time.perf_counter(), 0
    try:
        with progress_bar(cfg.name, total=cfg.max_steps, unit="steps",
                          enabled=main and cfg.progress) as advance:
            advance(step)
            while step < cfg.max_steps:
                loss_sum = torch.zeros((), device=device)
                for micro in range(cfg.grad_accum):
                    first = cursor + (micro * world + rank) * cfg.batch_size
                    batch = data.blocks(first, cfg.batch_size).to(device, non_blocking=True)  # (B, T)
                    sync = micro == cfg.grad_accum - 1
                    ctx = contextlib.nullcontext() if sync or world == 1 else accelerator.no_sync(model)
                    with ctx:
                        with accelerator.autocast():
                            loss = loss_fn(model, batch, batch)
                        accelerator.backward(loss / cfg.grad_accum)
                    loss_sum += loss.detach()
                cursor += cfg.batch_size * cfg.grad_accum * world
                grad_norm = accelerator.clip_grad_norm_(model.parameters(),
                                                        cfg.clip_grad if cfg.clip_grad > 0 else 1e9)
                mean_loss = accelerator.reduce(loss_sum / cfg.grad_accum, "mean")
                loss_value = float(mean_loss)
                if not math.isfinite(loss_value) or not math.isfinite(float(grad_norm)):
                    where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint was saved yet"
                    raise TrainingError(f"{run_dir}: loss is {loss_value} (grad norm "
                                        f"{float(grad_norm)}) at step {step + 1}; stopping "
                                        f"without saving ({where}). Try a lower lr or clip_grad.")
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tok_since += tokens_per_step
                record: dict[str, Any] | None = None
                if step % cfg.log_every == 0 or step % cfg.eval_every == 0 or step == cfg.max_steps:
                    now = time.perf_counter()
                    record = {"step": step, "loss": loss_value, "lr": lr,
                              "grad_norm": float(grad_norm), "tok_s": tok_since / (now - t_last),
                              "tokens": step * tokens_per_step}
                    t_last, tok_since = now, 0
                if v_ids is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                    record["valid_loss"] = evaluate()
                    if main and cfg.keep_best:
                        update_best(record["valid_loss"])
                if main and record is not None:
                    fh.write(json.dumps(record) + "\n")
                    fh.flush()
                    if writer is not None:
                        for key in ("loss", "lr", "grad_norm", "tok_s", "valid_loss"):
                            if key in record:
                                writer.add_scalar(f"train/{key}" if key != "valid_loss" else
                                                  "valid/loss", record[key], step)
                    advance(1, loss=loss_value, tok_s=round(record["tok_s"]))
                elif main:
                    advance(1)
                if step % cfg.save_every == 0 or step == cfg.max_steps:
                    if main:
                        unwrapped = accelerator.unwrap_model(model)
                        last_good = save_checkpoint(run_dir, step, unwrapped, spec, optimizer,
                                                    scheduler, cursor, cfg.keep_last)
                    accelerator.wait_for_everyone()
                _debug_kill(step)
    finally:
        if fh is not None:
            fh.close()
        if writer is not None:
            writer.close()
    if main:
        use_best = cfg.final_model == "best" and (run_dir / BEST_DIR / META_FILE).is_file()
        _publish_final(run_dir, run_dir / BEST_DIR if use_best else latest_checkpoint(run_dir))
        if best["best_step"] is not None:
            log.info("%s: best valid loss %.4f at step %d; final model = %s", cfg.name,
                     best["best_valid_loss"], best["best_step"], "best" if use_best else "last")
        if cfg.plot:
            from speechlm.lm.plots import plot_run

            plot_run(run_dir)
    accelerator.wait_for_everyone()
    return run_dir


MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "speech_vocab.json",
               "tokenizer.json", META_FILE)


def _publish_final(run_dir: Path, ckpt: Path | None) -> None:
    """Copy a model dir's files (last checkpoint or best/) to the run dir.

    ``speechlm.json`` goes last and each file is replaced atomically.
    """
    if ckpt is None:
        return
    for name in MODEL_FILES:
        src = ckpt / name
        if src.is_file():
            with atomic_file(run_dir / name) as tmp:
                shutil.copyfile(src, tmp)


# ---------------------------------------------------------------- entry points


def run(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    """Build data and model for a speech LM recipe, then train. Returns the run dir."""
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    seed_everything(cfg.seed)
    if cfg.kind != "speech":
        raise ConfigError(f"{source}: kind={cfg.kind!r}; use `speechlm text-lm train` for text LMs")
    with state.main_process_first():  # only rank 0 builds missing corpus/tokenizer/text LM
        vocab, train, valid, meta = speech_data(cfg)
        text_lm = ensure_text_lm(cfg) if cfg.init == "warm" else None
    if cfg.init == "warm":
        from speechlm.lm.init.warm import warm_init

        overrides = {k: getattr(cfg, k) for k in ("hidden_size", "num_layers", "num_heads",
                                                   "intermediate_size") if getattr(cfg, k)}
        if overrides:
            raise ConfigError(f"{source}: {', '.join(overrides)} cannot be set with init=warm "
                              f"(the architecture comes from text_lm_dir={cfg.text_lm_dir})")
        model = warm_init(text_lm, vocab, seed=cfg.seed, embed_init=cfg.embed_init)
    else:
        from speechlm.lm.init.cold import cold_init

        model = cold_init(vocab, cfg.preset, cfg.seed, hidden_size=cfg.hidden_size,
                          num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                          intermediate_size=cfg.intermediate_size)
    if cfg.seq_len > model.config.max_position_embeddings:
        raise ConfigError(f"{source}: seq_len={cfg.seq_len} exceeds the model's "
                          f"max_position_embeddings={model.config.max_position_embeddings}")
    spec = ModelSpec(vocab=vocab, kind="speech", tokenizer_dir=meta.get("tokenizer"),
                     extra={"init": cfg.init, "recipe": cfg.name, "seq_len": cfg.seq_len,
                            "units_dir": str(Path(cfg.units_dir).resolve()),
                            "text_lm_dir": str(Path(cfg.text_lm_dir).resolve())
                            if cfg.init == "warm" else None})
    return train_loop(cfg, model, spec, train, valid, resume=resume)


def train_from_config(config_path: str | Path | None, overrides: list[str] | None = None,
                      resume: bool = False) -> Path:
    """Same as ``speechlm train --config PATH key=value ... [--resume]``; returns the run dir."""
    cfg = load_config(TrainConfig, config_path, overrides or [])
    return run(cfg, resume=resume, source=str(config_path or "defaults"))


__all__ = ["TrainConfig", "ModelSpec", "train_from_config", "train_loop", "run", "lm_loss",
           "config_to_dict", "replace"]
