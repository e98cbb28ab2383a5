"""The generic training loop (HF Accelerate): a batch source and a loss in, a run directory out.

``train_loop(cfg, model, spec, data)`` trains any model on any :class:`BatchSource` (packed
blocks of :mod:`speechlm.lm.packing`, whatever the sequence builder) with a loss
``loss_fn(model, input_ids, labels, loss_weights)``; labels are never assumed to equal the
inputs. It owns precision and attention choice, checkpoints and exact resume, the NaN stop,
metrics / TensorBoard / plots, the best model and the final evaluation on ``test``. A run dir::

    config.yaml            resolved config (precision and attention as resolved on this machine)
    metrics.jsonl          one record per logged step: step, loss, lr, grad_norm, tok_s (+ valid_loss)
    tb/                    TensorBoard events
    loss.png               loss curves (train, valid)
    checkpoint-<step>/     model dir + trainer state (speechlm.lm.checkpoints)
    best/                  model dir with the lowest validation loss so far (keep_best: true)
    best.json              best_valid_loss, best_step, final_model, last_valid_loss (+ test_loss)
    config.json, model.safetensors, speech_vocab.json, speechlm.json   the final model

Model selection uses ``valid`` only; when the data has a ``test`` split, the final model's loss
on it is reported in ``best.json`` (``test_loss``), so reported figures are not chosen on the split
they are reported on. One process by default; ``accelerate launch --num_processes N`` runs DDP
(gloo on CPU, NCCL on GPU): each rank takes its own blocks of every global batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from speechlm.core.checkpoint import atomic_dir, clean_temp, latest_checkpoint, list_checkpoints
from speechlm.core.config import save_config
from speechlm.core.errors import TrainingError
from speechlm.core.files import atomic_write_json
from speechlm.core.progress import progress_bar
from speechlm.core.threads import torch_threads
from speechlm.lm.checkpoints import (ModelSpec, debug_kill, load_checkpoint, publish_final,
                                     resume_from, save_checkpoint, truncate_metrics)
from speechlm.lm.config import TrainConfig
from speechlm.lm.model import count_params
from speechlm.lm.modeldir import META_FILE
from speechlm.lm.packing import Batch
from speechlm.lm.precision import attention_implementation, resolve_attention, resolve_precision

log = logging.getLogger(__name__)

BEST_DIR = "best"
BEST_JSON = "best.json"


def lm_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
            loss_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross entropy of ``labels[..., 1:]`` (``-100`` ignored), for one-row ``(B, T)``
    and multi-row ``(B, R, T)`` models alike: the mean over scored targets, or their
    ``loss_weights``-weighted mean.

    Computed here instead of ``model(labels=...)``: no attention mask is passed (packed causal
    blocks, so SDPA runs with ``is_causal`` and no mask is built) and the loss takes the shifted
    views without HF's padded label copy. Same value as HF's loss; under ``torch.compile`` model
    and loss are one graph with no breaks (``torch._dynamo.explain``). Works through DDP/compile
    wrappers (only ``forward`` is called).
    """
    logits = model(input_ids=input_ids, use_cache=False).logits[..., :-1, :]  # (B, [R,] T-1, V)
    flat = logits.reshape(-1, logits.size(-1)).float()
    target = labels[..., 1:].reshape(-1)
    if loss_weights is None:
        return torch.nn.functional.cross_entropy(flat, target, ignore_index=-100)
    nll = torch.nn.functional.cross_entropy(flat, target, ignore_index=-100, reduction="none")
    weight = loss_weights[..., 1:].reshape(-1) * (target != -100)
    return (nll * weight).sum() / weight.sum().clamp(min=1e-8)


def loss_mass(batch: Batch) -> torch.Tensor:
    """What :func:`lm_loss` averages over (scored targets, or their total weight)."""
    scored = batch.labels[..., 1:] != -100
    if batch.loss_weights is None:
        return scored.sum()
    return (batch.loss_weights[..., 1:] * scored).sum()


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


class BatchSource(Protocol):
    """Training data as blocks addressed by one integer cursor (exact resume)."""

    blocks_per_epoch: int
    tokens: int

    def blocks(self, cursor: int, n: int) -> Batch: ...


@dataclass
class LoopData:
    """A recipe's data for the loop: training blocks, validation (model selection) and test
    (reported only) batches."""

    train: BatchSource
    valid: Batch | None = None
    test: Batch | None = None


Loss = Callable[..., torch.Tensor]


def train_loop(cfg: TrainConfig, model: torch.nn.Module, spec: ModelSpec, data: LoopData,
               resume: bool = False, loss_fn: Loss | None = None) -> Path:
    """Train ``model`` with ``loss_fn`` (default :func:`lm_loss`); returns the run dir (also the
    final model dir).

    Runs with ``cfg.threads`` torch threads and the training attention kernel, and restores both
    for the caller afterwards.
    """
    precision = resolve_precision(cfg)
    with torch_threads(cfg.threads), attention_implementation(model, resolve_attention(cfg, precision)):
        return _Run(cfg, model, spec, data, loss_fn or lm_loss, precision).train(resume)


class _Run:
    """One training run: set up, step, evaluate, save; split so each part reads on its own."""

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, spec: ModelSpec, data: LoopData,
                 loss_fn: Loss, precision: str) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        # Accelerate keeps one process-wide state and refuses a second run with another
        # precision in the same process; each run sets its own (as HF's TrainingArguments does).
        AcceleratorState._reset_state()
        self.accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no",
                                       cpu=not torch.cuda.is_available())
        acc = self.accelerator
        self.main, self.world, self.rank = acc.is_main_process, acc.num_processes, acc.process_index
        self.cfg, self.model, self.spec, self.data, self.precision = cfg, model, spec, data, precision
        self.run_dir = Path(cfg.output_dir)
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        # compile model + loss as one function (the model is an argument, so dynamo guards on it)
        self.loss_fn = torch.compile(loss_fn) if cfg.compile else loss_fn
        self.eval_loss_fn = loss_fn
        self.step = self.cursor = 0
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * self.world * cfg.seq_len
        self.best: dict[str, Any] = {"best_valid_loss": None, "best_step": None}

    @property
    def net(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def _prepare_dir(self, resume: bool) -> None:
        """Fresh run: clear old outputs. Resume: restore the latest checkpoint and best.json."""
        cfg, run_dir = self.cfg, self.run_dir
        ckpt, contents = resume_from(run_dir) if resume else (None, None)
        if self.main:
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
        self.accelerator.wait_for_everyone()
        if self.main and ckpt is not None:  # newer ones are damaged: the run redoes those steps
            for newer in list_checkpoints(run_dir):
                if newer.name > ckpt.name:
                    shutil.rmtree(newer)
        if ckpt is not None:
            self.step, self.cursor = load_checkpoint(ckpt, contents, self.model, self.optimizer,
                                                     self.scheduler, self.spec.vocab)
            log.info("resumed from %s (step %d)", ckpt, self.step)
        best_path = run_dir / BEST_JSON
        if resume and best_path.is_file():  # an exact resume re-finds the same losses
            self.best = json.loads(best_path.read_text(encoding="utf-8"))
        if self.main:
            truncate_metrics(run_dir / "metrics.jsonl", self.step)
            save_config(replace(cfg, precision=self.precision,
                                attention=self.model.config._attn_implementation),
                        run_dir / "config.yaml")
        if self.step >= cfg.max_steps:
            log.warning("%s: already at step %d >= max_steps=%d", run_dir, self.step, cfg.max_steps)

    def evaluate(self, batch: Batch) -> float:
        """Token-weighted mean loss over ``batch`` (sharded across ranks)."""
        cfg, acc = self.cfg, self.accelerator
        net = self.net  # no DDP hooks: ranks run different batch counts
        net.eval()
        total = torch.zeros(2, dtype=torch.float64, device=acc.device)
        with torch.no_grad():
            for start in range(self.rank * cfg.batch_size, len(batch), self.world * cfg.batch_size):
                part = batch[start:start + cfg.batch_size].to(acc.device)
                n = loss_mass(part)
                with acc.autocast():
                    total[0] += self.eval_loss_fn(net, part.input_ids, part.labels,
                                                  part.loss_weights).double() * n
                total[1] += n
        total = acc.reduce(total, "sum")
        net.train()
        return float(total[0] / total[1].clamp(min=1))

    def _update_best(self, valid_loss: float) -> None:
        """Save ``best/`` (atomic) when ``valid_loss`` is the lowest so far; write best.json."""
        best = self.best
        if best["best_valid_loss"] is None or valid_loss < best["best_valid_loss"]:
            best.update(best_valid_loss=valid_loss, best_step=self.step)
            with atomic_dir(self.run_dir / BEST_DIR) as tmp:
                self.spec.write(tmp, self.net)
        best.update(last_valid_loss=valid_loss, last_eval_step=self.step,
                    final_model=self.cfg.final_model)
        atomic_write_json(self.run_dir / BEST_JSON, best, indent=1)

    def _train_step(self) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (mean loss, grad norm)."""
        cfg, acc, model = self.cfg, self.accelerator, self.model
        loss_sum = torch.zeros((), device=acc.device)
        for micro in range(cfg.grad_accum):
            first = self.cursor + (micro * self.world + self.rank) * cfg.batch_size
            batch = self.data.train.blocks(first, cfg.batch_size).to(acc.device)  # (B, [R,] T)
            sync = micro == cfg.grad_accum - 1
            ctx = contextlib.nullcontext() if sync or self.world == 1 else acc.no_sync(model)
            with ctx:
                with acc.autocast():
                    loss = self.loss_fn(model, batch.input_ids, batch.labels, batch.loss_weights)
                acc.backward(loss / cfg.grad_accum)
            loss_sum += loss.detach()
        self.cursor += cfg.batch_size * cfg.grad_accum * self.world
        grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.clip_grad if cfg.clip_grad > 0 else 1e9)
        loss_value = float(acc.reduce(loss_sum / cfg.grad_accum, "mean"))
        if not math.isfinite(loss_value) or not math.isfinite(float(grad_norm)):
            last_good = latest_checkpoint(self.run_dir)
            where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint was saved yet"
            raise TrainingError(f"{self.run_dir}: loss is {loss_value} (grad norm {float(grad_norm)}) "
                                f"at step {self.step + 1}; stopping without saving ({where}). "
                                "Try a lower lr or clip_grad.")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss_value, float(grad_norm)

    def _after_step(self, loss: float, grad_norm: float, lr: float, clock: list[float],
                    fh: Any, writer: Any, advance: Callable[..., None]) -> None:
        """Log, evaluate, keep the best model and checkpoint as the config asks."""
        cfg, step = self.cfg, self.step
        at_end, eval_now = step == cfg.max_steps, step % cfg.eval_every == 0
        record: dict[str, Any] | None = None
        if step % cfg.log_every == 0 or eval_now or at_end:
            now = time.perf_counter()
            record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "tok_s": clock[1] / (now - clock[0]), "tokens": step * self.tokens_per_step}
            clock[:] = [now, 0]
        if self.data.valid is not None and (eval_now or at_end):
            record["valid_loss"] = self.evaluate(self.data.valid)
            if self.main and cfg.keep_best:
                self._update_best(record["valid_loss"])
        if self.main and record is not None:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            if writer is not None:
                for key in ("loss", "lr", "grad_norm", "tok_s", "valid_loss"):
                    if key in record:
                        writer.add_scalar("valid/loss" if key == "valid_loss" else f"train/{key}",
                                          record[key], step)
            advance(1, loss=loss, tok_s=round(record["tok_s"]))
        elif self.main:
            advance(1)
        if step % cfg.save_every == 0 or at_end:
            if self.main:
                save_checkpoint(self.run_dir, step, self.net, self.spec, self.optimizer,
                                self.scheduler, self.cursor, cfg.keep_last)
            self.accelerator.wait_for_everyone()

    def train(self, resume: bool) -> Path:
        cfg = self.cfg
        self._prepare_dir(resume)
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.model.train()
        writer = None
        if self.main and cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir / "tb"),
                                   purge_step=self.step + 1 if self.step else None)
        if self.main:
            log.info("%s: %d params, %d train blocks/epoch (%d tokens), %d tokens/step, "
                     "%d process(es), %s, %s attention", cfg.name, count_params(self.net),
                     self.data.train.blocks_per_epoch, self.data.train.tokens, self.tokens_per_step,
                     self.world, self.precision, self.net.config._attn_implementation)
        fh = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") if self.main else None
        clock = [time.perf_counter(), 0]  # time of the last record, tokens since
        try:
            with progress_bar(cfg.name, total=cfg.max_steps, unit="steps",
                              enabled=self.main and cfg.progress) as advance:
                advance(self.step)
                while self.step < cfg.max_steps:
                    lr = self.scheduler.get_last_lr()[0]
                    loss, grad_norm = self._train_step()
                    clock[1] += self.tokens_per_step
                    self._after_step(loss, grad_norm, lr, clock, fh, writer, advance)
                    debug_kill(self.step)
        finally:
            if fh is not None:
                fh.close()
            if writer is not None:
                writer.close()
        self._finish()
        return self.run_dir

    def _finish(self) -> None:
        """Publish the final model (best or last), evaluate it on ``test``, plot."""
        cfg, run_dir = self.cfg, self.run_dir
        use_best = cfg.final_model == "best" and (run_dir / BEST_DIR / META_FILE).is_file()
        if self.main:
            publish_final(run_dir, run_dir / BEST_DIR if use_best else latest_checkpoint(run_dir))
            if self.best["best_step"] is not None:
                log.info("%s: best valid loss %.4f at step %d; final model = %s", cfg.name,
                         self.best["best_valid_loss"], self.best["best_step"],
                         "best" if use_best else "last")
        self.accelerator.wait_for_everyone()
        if self.data.test is not None:
            self._report_test(use_best)
        if self.main and cfg.plot:
            from speechlm.lm.plots import plot_run

            plot_run(run_dir)
        self.accelerator.wait_for_everyone()

    def _report_test(self, use_best: bool) -> None:
        """Loss of the final model on ``test`` -> best.json (reported, never used to select)."""
        from safetensors.torch import load_file

        weights = load_file(self.run_dir / "model.safetensors")
        self.net.load_state_dict(weights, strict=False)  # tied head keys are not saved
        test_loss = self.evaluate(self.data.test)
        final_step = self.best["best_step"] if use_best else self.step
        self.best.update(test_loss=test_loss, test_step=final_step,
                         final_model=self.cfg.final_model)
        if self.main:
            atomic_write_json(self.run_dir / BEST_JSON, self.best, indent=1)
            log.info("%s: test loss %.4f (final model, step %s)", self.cfg.name, test_loss, final_step)
