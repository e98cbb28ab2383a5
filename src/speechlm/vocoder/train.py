"""Training a unit vocoder: acoustic model (mel L1) and generator (mel + multi-resolution STFT,
then least-squares GAN with feature matching against multi-period + multi-resolution
discriminators), one loop, fixed step count.

Each step draws ``batch`` windows of ``segment_seconds``: the acoustic model predicts their log-mel
from the deduplicated units and durations of the window; the generator vocodes a shorter
``voc_segment_seconds`` slice of the *ground-truth* mel of the same windows (teacher forcing, so it
learns the mel -> waveform map undisturbed by the acoustic model's errors). The discriminators
join after ``gan_start`` of the steps: before that they would judge noise.

Run directory = the vocoder directory::

    OUT/model.safetensors, OUT/config.json   the vocoder, written at the end (config.json last:
                                             a directory without it is an unfinished run)
    OUT/train.yaml                           resolved training config
    OUT/tb/                                  TensorBoard scalars
    OUT/checkpoints/checkpoint-<step>/       state.pt (weights, optimizers, RNG) + state.json
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from speechlm.core.checkpoint import (atomic_dir, checkpoint_name, clean_temp, latest_checkpoint,
                                      list_checkpoints, prune_checkpoints)
from speechlm.core.config import config_to_dict, save_config
from speechlm.core.errors import CheckpointError, ConfigError, DataError, TrainingError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import torch_threads
from speechlm.data.corpus import Corpus
from speechlm.tokenizers import dedup, load_tokenizer
from speechlm.vocoder.discriminators import (Discriminators, discriminator_loss,
                                             feature_matching_loss, generator_loss)
from speechlm.tokenizers.semantic.dsp import mel_filterbank
from speechlm.vocoder.model import (F0_CENTRE_HZ, LOG_MEL_FLOOR, MEL_NFFT, N_MELS, VocoderConfig,
                                    mel_spectrogram, stft_loss)
from speechlm.vocoder.unit_vocoder import UnitVocoder, write_vocoder_files

log = logging.getLogger(__name__)

STATE_PT, STATE_JSON = "state.pt", "state.json"


@dataclass(frozen=True)
class VocoderTrainConfig:
    """Every key of ``speechlm vocoder train --config FILE.yaml [key=value ...]``."""

    corpus: str = ""                   # corpus directory (required)
    tokenizer: str = ""                # tokenizer directory (required); K and frame rate come from it
    out: str = ""                      # output vocoder directory (required)
    units: str | None = None           # token dataset of this tokenizer (`speechlm tokenize`): its
                                       # units are reused instead of encoding the corpus again
    split: str = "train"
    max_hours: float | None = None     # use at most this much audio of the split
    steps: int = 800                   # the budget: fixed, so two runs train the same model
    max_minutes: float | None = None   # optional wall-clock cap on top (data preparation included)
    seed: int = 0
    batch: int = 8
    segment_seconds: float = 2.0       # acoustic model window
    voc_segment_seconds: float = 0.25  # generator / discriminator window (a slice of it)
    lr: float = 2e-3                   # acoustic model
    voc_lr: float = 2e-3               # generator
    disc_lr: float = 1e-3              # discriminators
    warmup_steps: int = 50
    gan_start: float = 0.8             # fraction of steps after which the GAN losses are on (1 = off)
    mel_weight: float = 15.0           # generator: mel L1 (Vocos uses 45 with weight 1 on the GAN)
    stft_weight: float = 1.0           # generator: multi-resolution STFT loss
    fm_weight: float = 2.0             # generator: feature matching
    adv_weight: float = 1.0            # generator: least-squares adversarial loss
    disc_width: int = 8                # discriminator channels (HiFi-GAN's are 32..1024: CPU budget)
    speaker_embedding: bool = True     # condition on Resemblyzer d-vectors (False: one average voice)
    speaker_clips: int = 4             # clips per training speaker for its d-vector
    speaker_dropout: float = 0.2       # share of windows trained with the zero ("average") voice
    # network shapes (speechlm.vocoder.model.VocoderConfig)
    dim: int = 192
    encoder_layers: int = 3
    decoder_layers: int = 4
    voc_dim: int = 128
    voc_layers: int = 4
    n_fft: int = 640
    dropout: float = 0.1
    source: bool | None = None         # source-filter generator at a predicted F0 (model.py doc);
                                       # false: the phase-predicting one; null: source-filter when
                                       # extra streams are given (the F0-aware vocoder), else phase
                                       # (measured WER ratios in docs/vocoder.md)
    f0_weight: float = 1.0             # acoustic model: log-F0 L1 + voicing BCE (source only)
    # run
    device: str = "auto"               # auto (cuda when available, else cpu) | cpu | cuda | cuda:N
    threads: int | None = 2            # torch intra-op threads (None: torch's default)
    save_every: int = 0                # checkpoint every N steps (0: none; the last is always kept)
    keep_last: int = 1
    tensorboard: bool = True
    progress: bool = True

    def validate(self) -> list[str]:
        bad = [f"{k} is required" for k in ("corpus", "tokenizer", "out") if not getattr(self, k)]
        for key in ("steps", "batch", "speaker_clips", "keep_last", "disc_width", "dim", "encoder_layers",
                    "decoder_layers", "voc_dim", "voc_layers"):
            if getattr(self, key) < 1:
                bad.append(f"{key}={getattr(self, key)} must be >= 1")
        for key in ("lr", "voc_lr", "disc_lr", "segment_seconds", "voc_segment_seconds"):
            value = getattr(self, key)
            if not (value > 0 and math.isfinite(value)):
                bad.append(f"{key}={value} must be a positive number")
        for key in ("mel_weight", "stft_weight", "fm_weight", "adv_weight", "f0_weight",
                    "warmup_steps", "save_every"):
            if getattr(self, key) < 0:
                bad.append(f"{key}={getattr(self, key)} must be >= 0")
        for key in ("gan_start", "speaker_dropout", "dropout"):
            if not 0 <= getattr(self, key) <= 1:
                bad.append(f"{key}={getattr(self, key)} must be in [0, 1]")
        if self.voc_segment_seconds > self.segment_seconds:
            bad.append(f"voc_segment_seconds={self.voc_segment_seconds} must be <= "
                       f"segment_seconds={self.segment_seconds}")
        if self.max_hours is not None and self.max_hours <= 0:
            bad.append(f"max_hours={self.max_hours} must be > 0")
        if self.max_minutes is not None and self.max_minutes <= 0:
            bad.append(f"max_minutes={self.max_minutes} must be > 0 (or null for steps only)")
        if self.threads is not None and self.threads < 1:
            bad.append(f"threads={self.threads} must be >= 1")
        return bad


class FrameStream(Protocol):
    """An extra per-frame input (e.g. F0) computed from the audio: ``dim`` values per unit frame."""

    dim: int

    def __call__(self, samples: np.ndarray, n_frames: int, frame_rate: float) -> np.ndarray:
        """16 kHz samples -> (n_frames, dim) float32."""
        ...


@dataclass
class Utterance:
    units: np.ndarray            # (N,) frame-level units
    mel: np.ndarray              # (N * r, 80) log-mel target
    wav: np.ndarray              # (N * hop,) samples
    speaker: str
    streams: dict[str, np.ndarray]
    f0: np.ndarray | None        # (N * r,) Hz per mel frame, 0 = unvoiced (source vocoders)


def cached_units(cfg: VocoderTrainConfig, tok) -> dict[str, np.ndarray]:
    """Frame-level units by utterance id from the token dataset ``cfg.units`` (empty if none);
    ``DataError`` if it was made with another tokenizer."""
    if not cfg.units:
        return {}
    from speechlm.tokenizers import TokenDataset, undedup

    data = TokenDataset(cfg.units)
    if data.tokenizer_dir.resolve() != Path(cfg.tokenizer).resolve() or not data.dedup:
        raise DataError(f"{cfg.units}: token dataset of tokenizer {data.tokenizer_dir} "
                        f"(dedup={data.dedup}), not of {Path(cfg.tokenizer).resolve()}")
    if cfg.split not in data.splits:
        return {}
    table = data.table(cfg.split, ["id", "units", "durations"]).to_pydict()
    return {i: undedup(np.asarray(u), np.asarray(d))
            for i, u, d in zip(table["id"], table["units"], table["durations"])}


def prepare(corpus: Corpus, tok, cfg: VocoderTrainConfig, streams: Mapping[str, FrameStream],
            hop: int, fbank: torch.Tensor, pitch: bool = False) -> list[Utterance]:
    """Per utterance: frame-level units, target log-mel, samples, speaker, extra streams and,
    with ``pitch``, the F0 per mel frame (Praat) that a source vocoder learns to predict."""
    from speechlm.tokenizers.prosody.f0 import extract_f0

    known = cached_units(cfg, tok)
    total = sum(corpus.table(cfg.split, ["duration"]).column("duration").to_pylist())
    if cfg.max_hours is not None:
        total = min(total, cfg.max_hours * 3600)
    items, seconds = [], 0.0
    with progress_bar(f"tokenizing {cfg.split} for the vocoder", total=total, unit="s",
                      enabled=cfg.progress) as advance:
        for utt in corpus.utterances(cfg.split):
            if seconds >= total:
                break
            samples = utt.samples()
            seconds += utt.duration
            advance(utt.duration)
            units = known.get(utt.id)
            if units is None or units.size != samples.size // hop:
                units, _ = tok.encode(samples, dedup=False)
            n = units.size
            if n < 10:  # under 0.2 s at 50 Hz: too short for a training window
                continue
            wav = samples[: n * hop].copy()
            extra = {}
            for name, stream in streams.items():
                values = np.asarray(stream(samples, n, tok.frame_rate), dtype=np.float32)
                if values.shape != (n, stream.dim) or not np.isfinite(values).all():
                    raise DataError(f"{corpus.root}: stream {name!r} gave {values.shape} for "
                                    f"utterance {utt.id}, expected finite ({n}, {stream.dim})")
                extra[name] = values
            mel = mel_spectrogram(torch.from_numpy(wav), fbank).numpy()
            f0 = extract_f0(wav).astype(np.float32) if pitch else None  # one per mel frame
            items.append(Utterance(units, mel, wav, utt.speaker, extra, f0))
    if not items:
        raise DataError(f"{corpus.root}: split {cfg.split!r} has no utterances of 0.2 s or more")
    return items


def speaker_vectors(corpus: Corpus, split: str, speakers: list[str], clips: int,
                    show_progress: bool) -> np.ndarray:
    """(S, 256) mean Resemblyzer d-vector of the first ``clips`` utterances of each speaker."""
    from speechlm.vocoder.unit_vocoder import speaker_encoder

    chosen: dict[str, list[np.ndarray]] = {s: [] for s in speakers}
    for utt in corpus.utterances(split):
        if utt.speaker in chosen and len(chosen[utt.speaker]) < clips:
            chosen[utt.speaker].append(utt.samples())
        if all(len(v) >= clips for v in chosen.values()):
            break
    encoder = speaker_encoder()
    out = []
    with progress_bar("speaker d-vectors", total=len(speakers), unit="voices",
                      enabled=show_progress) as advance:
        for s in speakers:
            out.append(encoder.embed_many(chosen[s]))
            advance()
    return np.stack(out)


class Batcher:
    """Random training windows, drawn from one seeded generator (state saved in checkpoints)."""

    def __init__(self, items: list[Utterance], cfg: VocoderTrainConfig, vc: VocoderConfig,
                 speaker_table: np.ndarray | None, speakers: list[str]) -> None:
        self.items, self.cfg, self.vc = items, cfg, vc
        self.rng = np.random.default_rng(cfg.seed)
        lengths = np.array([it.units.size for it in items])
        self.weights = lengths / lengths.sum()
        self.frames = max(1, round(cfg.segment_seconds * vc.frame_rate))
        self.voc_frames = max(1, round(cfg.voc_segment_seconds * vc.frame_rate))
        self.table = speaker_table
        self.spk = {s: i for i, s in enumerate(speakers)}

    def __call__(self) -> dict[str, torch.Tensor]:
        cfg, r, hop = self.cfg, self.vc.mel_per_frame, self.vc.hop
        picks = self.rng.choice(len(self.items), size=cfg.batch, p=self.weights)
        rows = []
        for idx in picks:
            it = self.items[idx]
            n = min(self.frames, it.units.size)
            off = int(self.rng.integers(0, it.units.size - n + 1))
            rows.append((it, off, n))
        n_max = max(n for _, _, n in rows)
        vf = min(self.voc_frames, min(n for _, _, n in rows))  # generator slice, in unit frames
        runs = [dedup(it.units[off: off + n]) for it, off, n in rows]
        u_max = max(len(u) for u, _ in runs)
        units = np.zeros((cfg.batch, u_max), np.int64)
        durations = np.zeros((cfg.batch, u_max), np.int64)
        mel = np.full((cfg.batch, n_max * r, N_MELS), LOG_MEL_FLOOR, np.float32)
        mask = np.zeros((cfg.batch, n_max * r), np.float32)
        voc_mel = np.zeros((cfg.batch, vf * r, N_MELS), np.float32)
        voc_wav = np.zeros((cfg.batch, vf * hop), np.float32)
        f0 = np.zeros((cfg.batch, n_max * r), np.float32)   # 0 = unvoiced (or no source)
        voc_f0 = np.zeros((cfg.batch, vf * r), np.float32)
        streams = {name: np.zeros((cfg.batch, n_max, dim), np.float32) for name, dim in self.vc.streams}
        speaker = np.zeros((cfg.batch, max(self.vc.speaker_dim, 1)), np.float32)
        for row, ((it, off, n), (u, d)) in enumerate(zip(rows, runs)):
            units[row, : len(u)], durations[row, : len(d)] = u, d
            mel[row, : n * r] = it.mel[off * r: (off + n) * r]
            mask[row, : n * r] = 1.0
            for name in streams:
                streams[name][row, :n] = it.streams[name][off: off + n]
            v = off + int(self.rng.integers(0, n - vf + 1))
            voc_mel[row] = it.mel[v * r: (v + vf) * r]
            voc_wav[row] = it.wav[v * hop: (v + vf) * hop]
            if it.f0 is not None:
                f0[row, : n * r] = it.f0[off * r: (off + n) * r]
                voc_f0[row] = it.f0[v * r: (v + vf) * r]
            if self.table is not None and self.rng.random() >= cfg.speaker_dropout:
                speaker[row] = self.table[self.spk[it.speaker]]
        t = torch.from_numpy
        return {"units": t(units), "durations": t(durations), "mel": t(mel), "mask": t(mask),
                "voc_mel": t(voc_mel), "voc_wav": t(voc_wav), "speaker": t(speaker),
                "f0": t(f0), "voc_f0": t(voc_f0),
                "streams": {k: t(v) for k, v in streams.items()}}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in batch.items()}


def lr_factor(step: int, cfg: VocoderTrainConfig) -> float:
    """Linear warmup, then cosine to 10 % at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _save_checkpoint(run: Path, step: int, parts: dict[str, nn.Module], opts: dict,
                     batcher: Batcher, ema: dict, keep_last: int) -> None:
    with atomic_dir(run / "checkpoints" / checkpoint_name(step)) as tmp:
        torch.save({"modules": {k: m.state_dict() for k, m in parts.items()},
                    "optimizers": {k: o.state_dict() for k, o in opts.items()},
                    "torch_rng": torch.get_rng_state()}, tmp / STATE_PT)
        (tmp / STATE_JSON).write_text(json.dumps(
            {"step": step, "batcher_rng": batcher.rng.bit_generator.state, "ema": ema}),
            encoding="utf-8")
    prune_checkpoints(run / "checkpoints", keep_last)


def _load_checkpoint(ckpt: Path, parts: dict[str, nn.Module], opts: dict,
                     batcher: Batcher) -> tuple[int, dict]:
    try:
        state = torch.load(ckpt / STATE_PT, map_location="cpu", weights_only=True)
        info = json.loads((ckpt / STATE_JSON).read_text(encoding="utf-8"))
        for key, module in parts.items():
            module.load_state_dict(state["modules"][key])
        for key, opt in opts.items():
            opt.load_state_dict(state["optimizers"][key])
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{ckpt}: cannot resume ({type(err).__name__}: "
                              f"{str(err).splitlines()[0]})") from None
    torch.set_rng_state(state["torch_rng"])
    batcher.rng.bit_generator.state = info["batcher_rng"]
    return int(info["step"]), dict(info["ema"])


def train_vocoder(cfg: VocoderTrainConfig, streams: Mapping[str, FrameStream] | None = None,
                  resume: bool = False) -> UnitVocoder:
    """Train, write ``cfg.out`` and return the trained vocoder (in memory, eval mode)."""
    with torch_threads(cfg.threads):
        return _train(cfg, dict(streams or {}), resume)


def _train(cfg: VocoderTrainConfig, streams: dict[str, FrameStream], resume: bool) -> UnitVocoder:
    start = time.monotonic()
    torch.manual_seed(cfg.seed)
    run = Path(cfg.out)
    tok = load_tokenizer(cfg.tokenizer)
    corpus = Corpus(cfg.corpus)
    try:
        vc = VocoderConfig(vocab_size=tok.vocab_size, frame_rate=float(tok.frame_rate),
                           speaker_dim=256 if cfg.speaker_embedding else 0,
                           streams=tuple((n, s.dim) for n, s in streams.items()),
                           dim=cfg.dim, encoder_layers=cfg.encoder_layers,
                           decoder_layers=cfg.decoder_layers, voc_dim=cfg.voc_dim,
                           voc_layers=cfg.voc_layers, n_fft=cfg.n_fft, dropout=cfg.dropout,
                           source=bool(streams) if cfg.source is None else cfg.source)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"vocoder config: {err}") from None
    problems = vc.validate()
    if problems:
        raise ConfigError(f"{cfg.tokenizer}: " + "; ".join(problems))
    items = prepare(corpus, tok, cfg, streams, vc.hop, mel_filterbank(N_MELS, MEL_NFFT), vc.source)
    speakers = sorted({it.speaker for it in items})
    model = UnitVocoder(vc, speakers, str(Path(cfg.tokenizer).resolve()))
    table = None
    if cfg.speaker_embedding:
        table = speaker_vectors(corpus, cfg.split, speakers, cfg.speaker_clips, cfg.progress)
        model.speaker_table.copy_(torch.from_numpy(table))
    model.mean_durations.copy_(torch.from_numpy(mean_durations(items, vc.vocab_size)))
    batcher = Batcher(items, cfg, vc, table, speakers)

    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else "cpu" if cfg.device == "auto" else cfg.device)
    model.to(device)
    disc = Discriminators(cfg.disc_width).to(device)
    opts = {"acoustic": torch.optim.AdamW(model.acoustic.parameters(), lr=cfg.lr, betas=(0.8, 0.99),
                                          weight_decay=0.01),
            "generator": torch.optim.AdamW(model.generator.parameters(), lr=cfg.voc_lr,
                                           betas=(0.8, 0.99), weight_decay=0.01),
            "disc": torch.optim.AdamW(disc.parameters(), lr=cfg.disc_lr, betas=(0.8, 0.99),
                                      weight_decay=0.01)}
    parts = {"acoustic": model.acoustic, "generator": model.generator, "disc": disc}
    step, ema = 0, {}
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").unlink(missing_ok=True)  # the "finished" marker: written last
    clean_temp(run / "checkpoints")
    ckpt = latest_checkpoint(run / "checkpoints") if resume else None
    if resume and ckpt is None:
        log.warning("--resume: no checkpoint in %s, starting from step 0", run / "checkpoints")
    if not resume:
        for old in list_checkpoints(run / "checkpoints"):
            shutil.rmtree(old)
        shutil.rmtree(run / "tb", ignore_errors=True)
    if ckpt is not None:
        step, ema = _load_checkpoint(ckpt, parts, opts, batcher)
        log.info("resumed from %s (step %d)", ckpt, step)
    save_config(cfg, run / "train.yaml")
    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "tb"), purge_step=step + 1 if step else None)
    gan_from = int(cfg.gan_start * cfg.steps)
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    model.train()
    disc.train()
    with progress_bar("vocoder", total=cfg.steps, unit="steps", enabled=cfg.progress) as advance:
        advance(step)
        while step < cfg.steps:
            if budget and time.monotonic() - start >= budget:
                log.warning("vocoder: --max-minutes %.1f reached at step %d of %d",
                            cfg.max_minutes, step, cfg.steps)
                break
            for name, opt in opts.items():
                base = {"acoustic": cfg.lr, "generator": cfg.voc_lr, "disc": cfg.disc_lr}[name]
                for group in opt.param_groups:
                    group["lr"] = base * lr_factor(step, cfg)
            losses = train_step(model, disc, opts, to_device(batcher(), device), cfg,
                                gan=step >= gan_from)
            step += 1
            for key, value in losses.items():
                ema[key] = value if key not in ema else 0.95 * ema[key] + 0.05 * value
            if writer is not None and step % 10 == 0:
                for key, value in losses.items():
                    writer.add_scalar(f"vocoder/{key}", value, step)
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
                _save_checkpoint(run, step, parts, opts, batcher, ema, cfg.keep_last)
            advance(1, **{k: v for k, v in ema.items() if k in ("mel_l1", "f0_l1", "voc_mel_l1", "disc")})
    if writer is not None:
        writer.close()
    _save_checkpoint(run, step, parts, opts, batcher, ema, cfg.keep_last)
    model.cpu().eval()
    model.info = {"training": {"steps": step, "seconds": round(time.monotonic() - start, 1),
                               "corpus": str(Path(cfg.corpus).resolve()), "split": cfg.split,
                               "utterances": len(items), "gan_from_step": gan_from,
                               "config": config_to_dict(replace(cfg, out=str(run.resolve()))),
                               **{k: round(v, 4) for k, v in ema.items()}}}
    publish_vocoder(model, run)
    log.info("saved vocoder to %s after %d steps (%.0f s)", run, step, time.monotonic() - start)
    return model


def publish_vocoder(model: UnitVocoder, run: Path) -> None:
    """Write the vocoder files into the run directory: weights first, ``config.json`` last, each
    by rename, so a directory with a ``config.json`` always holds the weights it describes."""
    tmp = run / ".publish"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_vocoder_files(model, tmp)
    (tmp / "model.safetensors").replace(run / "model.safetensors")
    (tmp / "config.json").replace(run / "config.json")
    tmp.rmdir()


def mean_durations(items: list[Utterance], vocab_size: int) -> np.ndarray:
    """Mean run length per unit (frames, >= 1; 2 for units never seen): the durations
    ``synthesize`` uses when an LM emits deduplicated units without them."""
    sums, counts = np.zeros(vocab_size), np.zeros(vocab_size)
    for it in items:
        u, d = dedup(it.units)
        np.add.at(sums, u, d)
        np.add.at(counts, u, 1)
    mean = np.where(counts > 0, np.divide(sums, np.maximum(counts, 1)), 2.0)
    return np.maximum(1, np.round(mean)).astype(np.int64)


def train_step(model: UnitVocoder, disc: Discriminators, opts: dict, batch: dict,
               cfg: VocoderTrainConfig, gan: bool) -> dict[str, float]:
    """One update of the acoustic model, the generator and (when ``gan``) the discriminators."""
    # acoustic model: masked L1 on log-mel
    speaker = batch["speaker"] if model.config.speaker_dim else None
    pred, pitch = model.acoustic(batch["units"], batch["durations"], speaker, batch["streams"])
    mask = batch["mask"][..., None]                                              # (B, F, 1)
    loss_mel = ((pred - batch["mel"]).abs() * mask).sum() / (mask.sum() * N_MELS)
    out = {"mel_l1": loss_mel.item()}
    if pitch is not None:  # log-F0 L1 on voiced frames + voicing BCE on every frame
        frames, f0 = batch["mask"], batch["f0"]
        voiced = (f0 > 0).float() * frames
        log_f0 = torch.log(f0.clamp(min=1.0) / F0_CENTRE_HZ)
        loss_f0 = ((pitch[..., 0] - log_f0).abs() * voiced).sum() / voiced.sum().clamp(min=1.0)
        loss_vuv = (nn.functional.binary_cross_entropy_with_logits(
            pitch[..., 1], (f0 > 0).float(), reduction="none") * frames).sum() / frames.sum()
        loss_mel = loss_mel + cfg.f0_weight * (loss_f0 + loss_vuv)
        out.update(f0_l1=loss_f0.item(), vuv=loss_vuv.item())
    # generator on ground-truth mel slices (and their real F0)
    # the noise is drawn from torch's RNG (saved in checkpoints, so a resumed run is the same)
    wav = model.generator(batch["voc_mel"], batch["voc_f0"] if model.config.source else None,
                          seed=int(torch.randint(0, 2**31 - 1, ())))
    target = batch["voc_wav"]
    loss_voc_mel = (mel_spectrogram(wav, model.fbank) - batch["voc_mel"]).abs().mean()
    loss_stft = stft_loss(wav, target)
    loss_g = cfg.mel_weight * loss_voc_mel + cfg.stft_weight * loss_stft
    out.update(voc_mel_l1=loss_voc_mel.item(), stft=loss_stft.item())
    if gan:
        # D(real) once, with its graph: its features are the matching targets now and its scores
        # the discriminators' loss below (their weights do not change in between)
        real = disc(target)
        disc.requires_grad_(False)  # the generator's backward needs no discriminator gradients
        fake = disc(wav)
        loss_adv, loss_fm = generator_loss(fake), feature_matching_loss(real, fake)
        loss_g = loss_g + cfg.adv_weight * loss_adv + cfg.fm_weight * loss_fm
        out.update(adv=loss_adv.item(), fm=loss_fm.item())
    loss = loss_mel + loss_g
    if not torch.isfinite(loss):
        raise TrainingError(f"vocoder: non-finite loss ({out})")
    opts["acoustic"].zero_grad(set_to_none=True)
    opts["generator"].zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.acoustic.parameters(), 1.0)
    nn.utils.clip_grad_norm_(model.generator.parameters(), 1.0)
    opts["acoustic"].step()
    opts["generator"].step()
    if gan:
        disc.requires_grad_(True)
        opts["disc"].zero_grad(set_to_none=True)
        loss_d = discriminator_loss(real, disc(wav.detach()))
        loss_d.backward()
        nn.utils.clip_grad_norm_(disc.parameters(), 1.0)
        opts["disc"].step()
        out["disc"] = loss_d.item()
    return out
