"""Training a codec: one flat loop (generator step, then discriminator step), resumable exactly.

Run directory = codec directory::

    OUT/config.json, OUT/model.safetensors     the codec (written at the end; see codec.py)
    OUT/train_config.yaml                      the resolved CodecTrainConfig
    OUT/checkpoints/checkpoint-<step>/         generator + discriminator (safetensors), optimizers,
                                               torch RNG (torch.save, loaded with weights_only=True),
                                               state.json (step, numpy RNG, usage counters)
    OUT/metrics.jsonl, OUT/tb/                 losses and per-codebook usage/perplexity
    OUT/training.png                           loss and codebook-usage curves

Generator loss = w_time * L1(wave) + w_mel * multi-scale mel + w_commit * commitment
               + (after ``adv_start`` steps) w_adv * hinge + w_fm * feature matching
               + (with ``distill``) w_distill * (1 - cos(head(codebook 1), teacher frames)).
The adversarial terms start late because at CPU step counts an early discriminator mostly adds
noise to a decoder that cannot yet produce speech-like audio (HiFi-GAN/EnCodec train 100k+ steps).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechlm.core.checkpoint import (atomic_dir, checkpoint_name, clean_temp, latest_checkpoint,
                                      prune_checkpoints)
from speechlm.core.config import config_to_dict, save_config
from speechlm.core.errors import CheckpointError, ConfigError, DataError, TrainingError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.data.corpus import Corpus
from speechlm.tokenizers.codec.codec import Codec
from speechlm.tokenizers.codec.losses import (MSSTFTDiscriminator, MultiScaleMelLoss,
                                              discriminator_hinge_loss, feature_matching_loss,
                                              generator_hinge_loss, semantic_distillation_loss)
from speechlm.tokenizers.codec.model import CodecConfig, CodecModel

log = logging.getLogger(__name__)

# may differ on --resume (extend or shorten a run; the replay is exact only when unchanged)
_SCHEDULE_KEYS = ("steps", "adv_start", "threads")
_MODEL_KEYS = ("channels", "strides", "dim", "codebooks", "codebook_size", "ema_decay",
               "kmeans_iters", "quantizer_dropout", "encoder", "decoder",
               "convnext_dim", "convnext_layers")


@dataclass(frozen=True)
class CodecTrainConfig:
    """Everything ``speechlm codec train`` reads from ``--config FILE.yaml`` / flags / key=value.

    The defaults are the 2-core CPU budget (about 10 minutes unloaded with ``threads=2``, see the
    README); the same keys scale up (``steps``, ``channels``, ``batch``, ``segment_seconds``).
    """

    # architecture (CodecConfig)
    channels: int = 16
    strides: list[int] = (4, 4, 4, 5)
    dim: int = 128
    codebooks: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.99
    # an entry is restarted when its EMA count of frames per step falls below this fraction of its
    # uniform share of a batch (batch x frames / codebook_size): ~160 steps unused at the defaults
    dead_code_fraction: float = 0.2
    kmeans_iters: int = 10
    quantizer_dropout: bool = True
    encoder: str = "mel"
    decoder: str = "istft"
    convnext_dim: int = 256
    convnext_layers: int = 6
    # semantic distillation: a unit tokenizer directory whose features() are the teacher
    distill: str | None = None
    distill_weight: float = 1.0
    # optimisation
    steps: int = 1000
    # 16 x 0.5 s windows per step: 609 s for 1000 steps with 2 threads (quiet machine), and Whisper
    # WER ratio 1.09-1.10 at 2 kbit/s on held-out voices where batch 4 (9 min) stays at 1.70
    batch: int = 16
    segment_seconds: float = 0.5
    lr: float = 1e-3
    disc_lr: float = 1e-3
    disc_filters: int = 8
    adv_start: int = 800
    w_time: float = 0.1
    w_mel: float = 1.0
    w_commit: float = 1.0
    w_adv: float = 1.0
    w_fm: float = 2.0
    # data and bookkeeping
    split: str = "train"
    max_hours: float | None = None
    seed: int = 0
    threads: int = 1
    log_every: int = 25
    save_every: int = 200
    keep_last: int = 2

    def validate(self) -> list[str]:
        problems = self.model_config().validate()
        for key in ("steps", "batch", "log_every", "save_every", "keep_last", "disc_filters"):
            if getattr(self, key) < 1:
                problems.append(f"{key}={getattr(self, key)}: must be >= 1")
        if self.segment_seconds * 16000 < self.model_config().hop:
            problems.append(f"segment_seconds={self.segment_seconds}: shorter than one frame")
        if self.save_every % self.log_every:
            problems.append(f"save_every={self.save_every}: must be a multiple of log_every="
                            f"{self.log_every} (a resumed run then logs the same windows)")
        if self.adv_start < 0:
            problems.append(f"adv_start={self.adv_start}: must be >= 0")
        if self.dead_code_fraction < 0:
            problems.append(f"dead_code_fraction={self.dead_code_fraction}: must be >= 0 (0 = no restarts)")
        return problems

    def model_config(self, distill_dim: int = 0) -> CodecConfig:
        values = {k: getattr(self, k) for k in _MODEL_KEYS}
        share = self.batch * self.segment_frames / self.codebook_size
        return CodecConfig.from_dict({**values, "distill_dim": distill_dim,
                                      "dead_code_threshold": self.dead_code_fraction * share})

    @property
    def segment_frames(self) -> int:
        return max(1, int(self.segment_seconds * 16000) // math.prod(self.strides))


@dataclass
class _Clip:
    samples: np.ndarray              # (T,) with T a multiple of the hop
    teacher: np.ndarray | None       # (T / hop, D) teacher frames, or None


def _load_clips(cfg: CodecTrainConfig, corpus_dir: Path, teacher, hop: int,
                show_progress: bool) -> list[_Clip]:
    corpus = Corpus(corpus_dir)
    need = cfg.segment_frames * hop
    total = sum(corpus.table(cfg.split, ["duration"]).column("duration").to_pylist())
    if cfg.max_hours is not None:
        total = min(total, cfg.max_hours * 3600)
    clips, seconds = [], 0.0
    with progress_bar(f"reading {cfg.split} audio", total=total, unit="s", enabled=show_progress) as advance:
        for utt in corpus.utterances(cfg.split):
            if seconds >= total:
                break
            samples = utt.samples()
            seconds += utt.duration
            advance(utt.duration)
            n = samples.size // hop * hop
            if n < need:
                continue
            feats = None
            if teacher is not None:
                feats = teacher.features(samples)[: n // hop].astype(np.float32)
            clips.append(_Clip(samples[:n].copy(), feats))
    if not clips:
        raise DataError(f"{corpus_dir}: split {cfg.split!r} has no utterance of at least "
                        f"{cfg.segment_seconds} s to train a codec on")
    return clips


def _batch(clips: list[_Clip], weights: np.ndarray, rng: np.random.Generator, batch: int,
           frames: int, hop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random frame-aligned crops: audio (B, 1, frames * hop), teacher (B, frames, D) or None."""
    picks = rng.choice(len(clips), size=batch, p=weights)
    audio, teacher = [], []
    for i in picks:
        clip = clips[i]
        start = int(rng.integers(0, clip.samples.size // hop - frames + 1))
        audio.append(clip.samples[start * hop: (start + frames) * hop])
        if clip.teacher is not None:
            teacher.append(clip.teacher[start: start + frames])
    audio_t = torch.from_numpy(np.stack(audio))[:, None]
    return audio_t, (torch.from_numpy(np.stack(teacher)) if teacher else None)


class UsageMeter:
    """Per-codebook code counts over a window of steps -> usage (fraction of entries) and perplexity."""

    def __init__(self, codebooks: int, size: int) -> None:
        self.counts = np.zeros((codebooks, size), dtype=np.int64)

    def add(self, codes: torch.Tensor) -> None:
        flat = codes.reshape(-1, codes.shape[-1]).numpy()                     # (B * N, K)
        for k in range(flat.shape[1]):
            np.add.at(self.counts[k], flat[:, k], 1)

    def summary(self) -> tuple[list[float], list[float]]:
        usage, perplexity = [], []
        for row in self.counts:
            total = row.sum()
            p = row[row > 0] / max(total, 1)
            usage.append(float((row > 0).mean()))
            perplexity.append(float(np.exp(-(p * np.log(p)).sum())) if total else 0.0)
        return usage, perplexity

    def reset(self) -> None:
        self.counts[:] = 0


def _save_checkpoint(run_dir: Path, step: int, model: nn.Module, disc: nn.Module, opt_g, opt_d,
                     rng: np.random.Generator, cfg: CodecTrainConfig) -> Path:
    from safetensors.torch import save_file

    path = run_dir / "checkpoints" / checkpoint_name(step)
    with atomic_dir(path) as tmp:
        for name, net in (("model", model), ("disc", disc)):
            save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                      str(tmp / f"{name}.safetensors"))
        torch.save({"opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps({
            "step": step, "numpy_rng": rng.bit_generator.state, "config": config_to_dict(cfg)}))
    prune_checkpoints(run_dir / "checkpoints", cfg.keep_last)
    return path


def _load_checkpoint(path: Path, model: nn.Module, disc: nn.Module, opt_g, opt_d,
                     rng: np.random.Generator, cfg: CodecTrainConfig) -> int:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text())
        saved = state["config"]
        changed = sorted(k for k, v in config_to_dict(cfg).items()
                         if k not in _SCHEDULE_KEYS and saved.get(k) != v)
        if changed:
            raise ConfigError(f"{path}: cannot resume with a different config "
                              f"({', '.join(f'{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}' for k in changed)})")
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        disc.load_state_dict(load_file(str(path / "disc.safetensors")))
        trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
        opt_g.load_state_dict(trainer["opt_g"])
        opt_d.load_state_dict(trainer["opt_d"])
        torch.set_rng_state(trainer["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        return int(state["step"])
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as err:
        raise CheckpointError(f"{path}: cannot resume ({str(err).splitlines()[0][:200]})") from None


def _log(writer, metrics_file, step: int, values: dict) -> None:
    metrics_file.write(json.dumps({"step": step, **values}) + "\n")
    metrics_file.flush()
    for key, value in values.items():
        if isinstance(value, list):
            for k, v in enumerate(value):
                writer.add_scalar(f"codebook_{key}/{k + 1}", v, step)
        else:
            writer.add_scalar(f"loss/{key}" if key.startswith("loss") else key, value, step)


@with_torch_threads
def train_codec(corpus_dir: str | Path, out_dir: str | Path, cfg: CodecTrainConfig | None = None,
                *, threads: int = 1, resume: bool = False, device: str = "cpu",
                show_progress: bool = True) -> Path:
    """Train a codec on ``cfg.split`` of a corpus into ``out_dir``; returns the codec directory.

    ``resume=True`` continues from the latest checkpoint in ``out_dir/checkpoints`` and reproduces
    the uninterrupted run's losses (same config required; ``steps`` and ``adv_start`` may change to
    extend or shorten a run, which then follows the new schedule from the checkpoint on). ``device``
    is a torch device for the networks (data loading and teacher features stay on the CPU).
    """
    from torch.utils.tensorboard import SummaryWriter

    cfg = cfg or CodecTrainConfig()
    start_time = time.monotonic()
    run_dir = Path(out_dir)
    corpus_dir = Path(corpus_dir)
    teacher = None
    if cfg.distill:
        from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

        teacher = load_tokenizer(cfg.distill)
        if abs(teacher.frame_rate - cfg.model_config().frame_rate) > 1e-6:
            raise ConfigError(f"distill={cfg.distill}: teacher frame rate {teacher.frame_rate} Hz != "
                              f"codec frame rate {cfg.model_config().frame_rate} Hz")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    hop = cfg.model_config().hop
    clips = _load_clips(cfg, corpus_dir, teacher, hop, show_progress)
    distill_dim = clips[0].teacher.shape[1] if teacher is not None else 0
    model = CodecModel(cfg.model_config(distill_dim)).to(device)
    disc = MSSTFTDiscriminator(cfg.disc_filters).to(device)
    mel_loss = MultiScaleMelLoss().to(device)
    opt_g = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.8, 0.99))
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_temp(run_dir / "checkpoints")
    step = 0
    if resume:
        ckpt = latest_checkpoint(run_dir / "checkpoints")
        if ckpt is None:
            raise CheckpointError(f"{run_dir / 'checkpoints'}: no checkpoint to resume from")
        step = _load_checkpoint(ckpt, model, disc, opt_g, opt_d, rng, cfg)
        log.info("resuming %s at step %d", ckpt, step)
    save_config(cfg, run_dir / "train_config.yaml")
    lengths = np.array([c.samples.size for c in clips], dtype=np.float64)
    weights = lengths / lengths.sum()
    meter = UsageMeter(cfg.codebooks, cfg.codebook_size)
    writer = SummaryWriter(str(run_dir / "tb"), purge_step=step + 1 if step else None)
    metrics_file = (run_dir / "metrics.jsonl").open("a" if resume else "w")
    if resume:  # drop lines past the checkpoint, as TensorBoard's purge_step does
        _truncate_metrics(run_dir / "metrics.jsonl", step, metrics_file)
    sums: dict[str, float] = {}
    last_ckpt = latest_checkpoint(run_dir / "checkpoints")
    model.train()
    disc.train()
    loop_start = time.monotonic()
    steps_at_start = step
    with progress_bar("codec", total=cfg.steps, unit="steps", enabled=show_progress) as advance:
        advance(step)
        while step < cfg.steps:
            lr_scale = min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for opt, base in ((opt_g, cfg.lr), (opt_d, cfg.disc_lr)):
                for group in opt.param_groups:
                    group["lr"] = base * lr_scale
            audio, target = _batch(clips, weights, rng, cfg.batch, cfg.segment_frames, hop)
            audio = audio.to(device)
            target = target.to(device) if target is not None else None
            dropout_seed = int(rng.integers(0, 2**31))
            adversarial = step >= cfg.adv_start
            out = model(audio, dropout_seed=dropout_seed)
            losses = {"loss_time": (out.audio - audio).abs().mean(),
                      "loss_mel": mel_loss(out.audio, audio), "loss_commit": out.commit_loss}
            total = (cfg.w_time * losses["loss_time"] + cfg.w_mel * losses["loss_mel"]
                     + cfg.w_commit * losses["loss_commit"])
            if adversarial:
                # discriminator first (on real and detached fake), then the generator against
                # the updated discriminator; real features for matching need no graph
                losses["loss_disc"] = discriminator_hinge_loss(disc(audio), disc(out.audio.detach()))
                opt_d.zero_grad(set_to_none=True)
                losses["loss_disc"].backward()
                opt_d.step()
                disc.requires_grad_(False)  # the generator step computes no discriminator grads
                with torch.no_grad():
                    real = disc(audio)
                fake = disc(out.audio)
                losses["loss_adv"] = generator_hinge_loss(fake)
                losses["loss_fm"] = feature_matching_loss(real, fake)
                total = total + cfg.w_adv * losses["loss_adv"] + cfg.w_fm * losses["loss_fm"]
            if out.semantic is not None:
                losses["loss_distill"] = semantic_distillation_loss(out.semantic, target)
                total = total + cfg.distill_weight * losses["loss_distill"]
            if not torch.isfinite(total):
                where = f"; last good checkpoint: {last_ckpt}" if last_ckpt else ""
                raise TrainingError(f"{run_dir}: non-finite codec loss at step {step}{where}")
            opt_g.zero_grad(set_to_none=True)
            total.backward()
            disc.requires_grad_(True)
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt_g.step()
            meter.add(out.codes.cpu())
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            sums["n"] = sums.get("n", 0) + 1
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                usage, perplexity = meter.summary()
                values = {k: v / sums["n"] for k, v in sums.items() if k != "n"}
                values.update(usage=usage, perplexity=perplexity, lr=cfg.lr * lr_scale)
                _log(writer, metrics_file, step, values)
                advance(0, mel=values["loss_mel"], min_usage=min(usage), ppl1=perplexity[0])
                meter.reset()
                sums = {}
            if step % cfg.save_every == 0 and step < cfg.steps:
                last_ckpt = _save_checkpoint(run_dir, step, model, disc, opt_g, opt_d, rng, cfg)
            advance(1)
    writer.close()
    metrics_file.close()
    loop_seconds = time.monotonic() - loop_start
    final = _read_last_metrics(run_dir / "metrics.jsonl")
    training = {"steps": step, "corpus": str(corpus_dir.resolve()), "split": cfg.split,
                "seed": cfg.seed, "clips": len(clips), "seconds": round(time.monotonic() - start_time, 1),
                "steps_per_second": round((step - steps_at_start) / max(loop_seconds, 1e-9), 4),
                "config": config_to_dict(cfg), "final": final}
    info = {"training": training}
    if teacher is not None:
        info["distill"] = {"tokenizer": str(Path(cfg.distill).resolve()), "features": teacher.features_name,
                           "dim": distill_dim}
    model.eval()
    path = Codec(model.cpu(), info=info).save(run_dir)
    _plot(run_dir)
    log.info("saved codec to %s after %d steps", path, step)
    return path


def _truncate_metrics(path: Path, step: int, handle) -> None:
    lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    handle.seek(0)
    handle.truncate()
    handle.write("".join(line + "\n" for line in lines))
    handle.flush()


def _read_last_metrics(path: Path) -> dict:
    lines = [line for line in path.read_text().splitlines() if line]
    return json.loads(lines[-1]) if lines else {}


def _plot(run_dir: Path) -> None:
    """training.png: reconstruction losses and per-codebook usage over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss_mel", "loss_time", "loss_commit", "loss_adv", "loss_fm", "loss_distill"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax1.plot(*zip(*pts), label=key[5:])
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_title("losses (window means)")
    ax1.legend()
    usage = np.array([r["usage"] for r in rows])
    for k in range(usage.shape[1]):
        ax2.plot(steps, usage[:, k], label=f"codebook {k + 1}")
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("step")
    ax2.set_title("codebook usage (fraction of entries per window)")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(run_dir / "training.png", dpi=100)
    plt.close(fig)
