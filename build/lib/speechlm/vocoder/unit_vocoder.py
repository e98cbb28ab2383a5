"""A trained unit vocoder as a directory, its training loop, and ``synthesize``.

Directory layout::

    VOC/config.json         format, VocoderConfig, tokenizer (absolute path), speakers, training info
    VOC/model.safetensors   acoustic model + vocoder weights, per-unit mean durations
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechlm.core.errors import CheckpointError, ConfigError, DataError
from speechlm.core.files import read_artefact_dir
from speechlm.core.progress import progress_bar
from speechlm.data.audio import SAMPLE_RATE
from speechlm.data.corpus import Corpus
from speechlm.tokenizers import dedup, load_tokenizer, undedup
from speechlm.core.checkpoint import atomic_dir
from speechlm.core.threads import with_torch_threads
from speechlm.tokenizers.semantic.dsp import mel_filterbank
from speechlm.vocoder.model import (MEL_NFFT, N_MELS, MelVocoder, UnitToMel, VocoderConfig,
                                    griffin_lim, mel_spectrogram, stft_loss)

log = logging.getLogger(__name__)

FORMAT = "speechlm-unit-vocoder"


class UnitVocoder(nn.Module):
    """units (+ durations, speaker) -> 16 kHz float32 waveform."""

    def __init__(self, config: VocoderConfig, speakers: list[str], tokenizer_dir: str | None = None,
                 info: dict | None = None) -> None:
        super().__init__()
        self.config = config
        self.speakers = list(speakers)
        self.tokenizer_dir = tokenizer_dir
        self.info = dict(info or {})
        self.acoustic = UnitToMel(config)
        self.vocoder = MelVocoder(config)
        self.register_buffer("mean_durations", torch.ones(config.vocab_size, dtype=torch.int64))
        self.register_buffer("fbank", mel_filterbank(N_MELS, MEL_NFFT), persistent=False)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def speaker_index(self, speaker: str | int | None) -> int:
        if speaker is None:
            return 0
        if isinstance(speaker, (int, np.integer)):
            if not 0 <= int(speaker) <= len(self.speakers):
                raise ConfigError(f"speaker index {speaker} out of range 0..{len(self.speakers)}")
            return int(speaker)
        if speaker not in self.speakers:
            raise ConfigError(f"unknown speaker {speaker!r}; the vocoder knows {self.speakers} "
                              "(or None for the average voice)")
        return self.speakers.index(speaker) + 1

    def _frames(self, units, durations) -> torch.Tensor:
        units = np.asarray(units, dtype=np.int64).reshape(-1)
        if units.size == 0:
            raise DataError("synthesize: empty unit sequence")
        if units.min() < 0 or units.max() >= self.config.vocab_size:
            raise DataError(f"synthesize: units must be in 0..{self.config.vocab_size - 1}, got "
                            f"{units.min()}..{units.max()}")
        if durations is None:
            durations = self.mean_durations.numpy()[units]
        durations = np.asarray(durations, dtype=np.int64).reshape(-1)
        if durations.shape != units.shape or durations.min() < 1:
            raise DataError(f"synthesize: durations must be positive and match units "
                            f"({durations.shape} vs {units.shape})")
        return torch.from_numpy(undedup(units, durations))

    @torch.inference_mode()
    def mel(self, units, durations=None, speaker=None) -> torch.Tensor:
        """(F, 80) predicted log-mel at 100 Hz."""
        self.eval()
        frames = self._frames(units, durations)
        return self.acoustic(frames[None], torch.tensor([self.speaker_index(speaker)]))[0]

    @torch.inference_mode()
    def synthesize(self, units, durations=None, speaker=None, griffin_lim_baseline: bool = False) -> np.ndarray:
        """Units (deduplicated with ``durations`` in frames, or one per frame when ``durations`` is
        None and the units are not deduplicated -- then each unit gets its mean training duration)
        -> 16 kHz float32 samples. ``griffin_lim_baseline`` swaps the neural vocoder for Griffin-Lim."""
        mel = self.mel(units, durations, speaker)
        if griffin_lim_baseline:
            return griffin_lim(mel.numpy())
        wav = self.vocoder(mel[None])[0]
        return (wav / max(1.0, float(wav.abs().max()) / 0.95)).numpy().astype(np.float32)

    def save(self, out_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        with atomic_dir(out_dir) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()},
                      str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text(json.dumps(
                {"format": FORMAT, "config": self.config.to_dict(), "speakers": self.speakers,
                 "tokenizer": self.tokenizer_dir, "sample_rate": SAMPLE_RATE, **self.info}, indent=2))
        return Path(out_dir).resolve()


def load_vocoder(path: str | Path) -> UnitVocoder:
    """Load a vocoder directory; ``CheckpointError`` naming the path if missing or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    config_path = path / "config.json"
    meta = read_artefact_dir(path, "vocoder", weights=("model.safetensors",), fmt=FORMAT)
    try:
        voc = UnitVocoder(VocoderConfig(**meta["config"]), meta["speakers"], meta.get("tokenizer"),
                          {k: meta[k] for k in ("training",) if k in meta})
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{config_path}: corrupt vocoder config ({err})") from None
    weights = path / "model.safetensors"
    try:
        voc.load_state_dict(load_file(str(weights)))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{weights}: cannot load vocoder weights ({str(err).splitlines()[0]})") from None
    return voc.eval()


def _prepare(corpus: Corpus, tok, split: str, max_hours: float | None, fbank: torch.Tensor,
             show_progress: bool) -> list[dict]:
    """Per utterance: frame-level units (50 Hz), target log-mel (100 Hz), samples, speaker."""
    total = sum(corpus.table(split, ["duration"]).column("duration").to_pylist())
    if max_hours is not None:
        total = min(total, max_hours * 3600)
    items, seconds = [], 0.0
    with progress_bar(f"tokenizing {split} for the vocoder", total=total, unit="s",
                      enabled=show_progress) as advance:
        for utt in corpus.utterances(split):
            if seconds >= total:
                break
            samples = utt.samples()
            seconds += utt.duration
            advance(utt.duration)
            if samples.size < 3200:
                continue
            units, _ = tok.encode(samples, dedup=False)
            n = units.size
            wav = torch.from_numpy(samples[: n * 320].copy())
            items.append({"units": units, "mel": mel_spectrogram(wav, fbank).numpy(),
                          "wav": wav.numpy(), "speaker": utt.speaker})
    if not items:
        raise DataError(f"{corpus.root}: split {split!r} has no utterances of 0.2 s or more")
    return items


@with_torch_threads
def train_vocoder(corpus_dir: str | Path, tokenizer_dir: str | Path, out_dir: str | Path,
                  steps: int = 3000, seed: int = 0, *, max_minutes: float | None = 2.0,
                  batch: int = 8, crop_frames: int = 50, lr: float = 2e-3, threads: int = 1,
                  split: str = "train", max_hours: float | None = None,
                  config: dict | None = None, show_progress: bool = True) -> Path:
    """Train the acoustic model and the vocoder jointly; stops at ``steps`` or ``max_minutes``.

    Each step: a batch of random ``crop_frames``-frame (50 Hz) windows; L1 on log-mel for the
    acoustic model, multi-resolution STFT + mel L1 on ground-truth mels for the vocoder.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = time.monotonic()
    tok = load_tokenizer(tokenizer_dir)
    corpus = Corpus(corpus_dir)
    fbank = mel_filterbank(N_MELS, MEL_NFFT)
    items = _prepare(corpus, tok, split, max_hours, fbank, show_progress)
    speakers = sorted({it["speaker"] for it in items})
    try:
        cfg = VocoderConfig(**{**(config or {}), "vocab_size": tok.vocab_size,
                               "n_speakers": len(speakers)})
    except TypeError as err:
        raise ConfigError(f"vocoder config: {err}") from None
    model = UnitVocoder(cfg, speakers, str(Path(tokenizer_dir).resolve()))
    # mean run length per unit: the default durations when an LM emits deduplicated units
    sums, counts = np.zeros(cfg.vocab_size), np.zeros(cfg.vocab_size)
    for it in items:
        u, d = dedup(it["units"])
        np.add.at(sums, u, d)
        np.add.at(counts, u, 1)
    model.mean_durations.copy_(torch.from_numpy(
        np.maximum(1, np.round(np.divide(sums, np.maximum(counts, 1)) + (counts == 0) * 2))).long())
    spk_index = {s: i + 1 for i, s in enumerate(speakers)}
    lengths = np.array([it["units"].size for it in items])
    weights = lengths / lengths.sum()
    params = list(model.acoustic.parameters()) + list(model.vocoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.8, 0.99))
    budget = max_minutes * 60 if max_minutes else None
    model.train()
    ema = {}
    done = 0
    with progress_bar("vocoder", total=steps, unit="steps", enabled=show_progress) as advance:
        for step in range(steps):
            frac = step / steps
            if budget:
                frac = max(frac, (time.monotonic() - start) / budget)
            if frac >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
            n = min(crop_frames, int(lengths.min()))
            picks = rng.choice(len(items), size=batch, p=weights)
            units_b = np.zeros((batch, n), dtype=np.int64)
            mel_b = np.zeros((batch, 2 * n, N_MELS), dtype=np.float32)
            wav_b = np.zeros((batch, n * 320), dtype=np.float32)
            spk_b = np.zeros(batch, dtype=np.int64)
            for row, idx in enumerate(picks):
                it = items[idx]
                off = rng.integers(0, it["units"].size - n + 1)
                units_b[row] = it["units"][off: off + n]
                mel_b[row] = it["mel"][2 * off: 2 * (off + n)]
                wav_b[row] = it["wav"][off * 320: (off + n) * 320]
                spk_b[row] = spk_index[it["speaker"]] if rng.random() > 0.2 else 0  # 0 = average voice
            mel_t, wav_t = torch.from_numpy(mel_b), torch.from_numpy(wav_b)
            mel_pred = model.acoustic(torch.from_numpy(units_b), torch.from_numpy(spk_b))
            loss_mel = (mel_pred - mel_t).abs().mean()
            wav_pred = model.vocoder(mel_t)
            loss_stft = stft_loss(wav_pred, wav_t)
            loss_voc_mel = (mel_spectrogram(wav_pred, model.fbank) - mel_t).abs().mean()
            loss = loss_mel + loss_stft + 0.5 * loss_voc_mel
            if not torch.isfinite(loss):
                from speechlm.core.errors import TrainingError
                raise TrainingError(f"vocoder: non-finite loss at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            for key, value in (("mel_l1", loss_mel), ("stft", loss_stft), ("voc_mel_l1", loss_voc_mel)):
                ema[key] = value.item() if key not in ema else 0.95 * ema[key] + 0.05 * value.item()
            done = step + 1
            advance(1, **ema)
    model.eval()
    model.info = {"training": {"steps": done, "seconds": round(time.monotonic() - start, 1),
                               "corpus": str(Path(corpus_dir).resolve()), "split": split,
                               "seed": seed, **{k: round(v, 4) for k, v in ema.items()}}}
    path = model.save(out_dir)
    log.info("saved vocoder to %s after %d steps (%.0f s)", path, done, time.monotonic() - start)
    return path


def resynthesize(tok, voc: UnitVocoder, samples: np.ndarray, speaker=None,
                 griffin_lim_baseline: bool = False) -> np.ndarray:
    """Audio -> units (deduplicated, with durations) -> audio."""
    units, durations = tok.encode(samples, dedup=True)
    return voc.synthesize(units, durations, speaker=speaker, griffin_lim_baseline=griffin_lim_baseline)
