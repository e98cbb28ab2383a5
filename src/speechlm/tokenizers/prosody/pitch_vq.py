"""SpiRit-LM-style pitch tokens: a small VQ-VAE over speaker-normalised log-F0 (64 codes, 12.5 Hz).

Input per 20 ms frame: the frame's log-F0 minus the speaker's mean log-F0 (unvoiced frames
interpolated) and a voiced flag. A strided conv encoder downsamples 4x to 12.5 Hz, one codebook
(``vector-quantize-pytorch``, EMA updates, k-means init, dead-code restarts) quantises, and a
transposed-conv decoder reconstructs both channels. Decoding gives an F0 contour again.

Directory layout::

    TOK/config.json          format, kind "pitch-vq", model and F0 settings, training losses
    TOK/model.safetensors    encoder / codebook / decoder weights
    TOK/speakers.json        mean log-F0 per training speaker + global mean
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.tokenizers.prosody.common import (FRAME_RATE, fit_speaker_norm, load_tensors,
                                                read_speaker_norm, read_tracks, save_common)
from speechlm.tokenizers.prosody.f0 import (F0Config, SpeakerNorm, extract_f0, interpolate_unvoiced,
                                            unit_f0)
from speechlm.tokenizers.semantic.kmeans import dedup as run_length

log = logging.getLogger(__name__)

KIND = "pitch-vq"
LOGF0_SCALE = 0.25  # normalised log-F0 is divided by this so the network sees values near +-1


@dataclass(frozen=True)
class PitchVQConfig:
    codebook_size: int = 64
    downsample: int = 4   # 50 Hz frames -> 12.5 Hz codes; a power of 2
    channels: int = 64
    code_dim: int = 32

    def __post_init__(self) -> None:
        if self.downsample < 1 or self.downsample & (self.downsample - 1) or self.codebook_size < 2:
            raise ConfigError(f"pitch VQ: downsample must be a power of 2 and codebook_size >= 2, "
                              f"got {self}")


class PitchVQVAE(nn.Module):
    """(B, 2, T) [normalised log-F0, voiced] -> (B, 2, T) reconstruction + (B, T / downsample) codes."""

    def __init__(self, config: PitchVQConfig) -> None:
        from vector_quantize_pytorch import VectorQuantize

        super().__init__()
        c, d = config.channels, config.code_dim
        strided = int(math.log2(config.downsample))
        self.encoder = nn.Sequential(
            nn.Conv1d(2, c, 5, padding=2), nn.GELU(),
            *[m for _ in range(strided) for m in (nn.Conv1d(c, c, 4, stride=2, padding=1), nn.GELU())],
            nn.Conv1d(c, d, 3, padding=1))
        self.vq = VectorQuantize(dim=d, codebook_size=config.codebook_size, decay=0.9,
                                 kmeans_init=True, commitment_weight=0.25,
                                 threshold_ema_dead_code=2)
        self.decoder = nn.Sequential(
            nn.Conv1d(d, c, 3, padding=1), nn.GELU(),
            *[m for _ in range(strided)
              for m in (nn.ConvTranspose1d(c, c, 4, stride=2, padding=1), nn.GELU())],
            nn.Conv1d(c, 2, 5, padding=2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x).transpose(1, 2)              # (B, T', D)
        quantized, codes, commit = self.vq(z)
        return self.decoder(quantized.transpose(1, 2)), codes, commit

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T') codes -> (B, 2, T' * downsample)."""
        return self.decoder(self.vq.get_output_from_indices(codes).transpose(1, 2))


def frame_inputs(f0: np.ndarray, hop_s: float, offset: float) -> np.ndarray:
    """(2, T) network input at 50 Hz from a frame F0 track: scaled normalised log-F0, voiced flag."""
    n = int(f0.size * hop_s * FRAME_RATE + 1e-9)
    hz = unit_f0(f0, hop_s, np.ones(n, dtype=np.int64), FRAME_RATE)
    voiced = hz > 0
    logf0 = np.log(np.where(voiced, hz, 1.0)) - offset
    filled = interpolate_unvoiced(logf0, voiced)
    return np.stack([np.zeros(n) if filled is None else filled / LOGF0_SCALE,
                     voiced.astype(np.float64)]).astype(np.float32)


class PitchVQTokenizer:
    """``encode(samples, speaker) -> (codes, durations)`` at 12.5 Hz; ``decode`` -> F0 at 50 Hz."""

    kind = KIND

    def __init__(self, model: PitchVQVAE, config: PitchVQConfig, norm: SpeakerNorm,
                 f0_config: F0Config, path: Path | None = None, info: dict | None = None) -> None:
        self.model = model.eval()
        self.model_config = config
        self.norm = norm
        self.f0_config = f0_config
        self.path = path
        self.info = dict(info or {})

    @property
    def vocab_size(self) -> int:
        return self.model_config.codebook_size

    @property
    def frame_rate(self) -> float:
        return FRAME_RATE / self.model_config.downsample

    def encode(self, samples: np.ndarray, speaker: str | None = None,
               dedup: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(codes, durations) int64 at :attr:`frame_rate`; ``dedup=False`` gives one per step."""
        codes, _ = self.encode_f0(extract_f0(samples, self.f0_config), speaker)
        return run_length(codes) if dedup else (codes, np.ones_like(codes))

    @torch.no_grad()
    def encode_f0(self, f0: np.ndarray, speaker: str | None = None) -> tuple[np.ndarray, float]:
        """(codes, offset) from an F0 track extracted with ``self.f0_config``."""
        offset = self.norm.offset(speaker, f0)
        x = frame_inputs(f0, self.f0_config.hop_s, offset)
        pad = -x.shape[1] % self.model_config.downsample
        x = np.pad(x, ((0, 0), (0, pad)), mode="edge")
        z = self.model.encoder(torch.from_numpy(x)[None]).transpose(1, 2)  # (1, T', D)
        _, codes, _ = self.model.vq(z)
        return codes[0].numpy().astype(np.int64), offset

    @torch.no_grad()
    def decode(self, codes: np.ndarray, offset: float, durations: np.ndarray | None = None,
               n_frames: int | None = None) -> np.ndarray:
        """F0 in Hz per 50 Hz frame (0 where the decoder says unvoiced)."""
        if durations is not None:
            codes = np.repeat(codes, durations)
        out = self.model.decode_codes(torch.as_tensor(codes, dtype=torch.long)[None])[0].numpy()
        hz = np.where(out[1] > 0, np.exp(out[0] * LOGF0_SCALE + offset), 0.0)
        return hz[:n_frames] if n_frames is not None else hz

    def save(self, out_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        with atomic_dir(out_dir) as tmp:
            state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
            save_common(tmp, {"kind": KIND, "model": asdict(self.model_config),
                              "f0": self.f0_config.to_dict(), "frame_rate": self.frame_rate,
                              "streams": [{"name": "pitch", "vocab_size": self.vocab_size,
                                           "frame_rate": self.frame_rate}], **self.info}, self.norm)
        self.path = Path(out_dir).resolve()
        return self.path

    @classmethod
    def load(cls, path: Path, config: dict) -> PitchVQTokenizer:
        try:
            model_config = PitchVQConfig(**config["model"])
            f0_config = F0Config(**config["f0"])
        except (KeyError, TypeError, ConfigError) as err:
            raise CheckpointError(f"{path / 'config.json'}: bad pitch-VQ settings ({err})") from None
        model = PitchVQVAE(model_config)
        expected = tuple(model.state_dict())
        tensors = load_tensors(path / "model.safetensors", expected, "the pitch VQ-VAE weights")
        try:
            model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        except RuntimeError as err:
            raise CheckpointError(f"{path / 'model.safetensors'}: weights do not fit the config "
                                  f"({str(err).splitlines()[0]})") from None
        return cls(model, model_config, read_speaker_norm(path), f0_config, path.resolve(),
                   {k: config[k] for k in ("training",) if k in config})


def _batch(inputs: list[np.ndarray], size: int, segment: int,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``segment``-frame crops (B, 2, S) and their validity mask (B, S)."""
    x = np.zeros((size, 2, segment), dtype=np.float32)
    mask = np.zeros((size, segment), dtype=np.float32)
    for b, i in enumerate(rng.integers(len(inputs), size=size)):
        item = inputs[i]
        start = int(rng.integers(max(1, item.shape[1] - segment + 1)))
        crop = item[:, start:start + segment]
        x[b, :, :crop.shape[1]] = crop
        mask[b, :crop.shape[1]] = 1.0
    return torch.from_numpy(x), torch.from_numpy(mask)


@with_torch_threads
def train_pitch_vq(corpus_dir: str | Path, out_dir: str | Path, *, split: str = "train",
                   config: PitchVQConfig = PitchVQConfig(), f0_config: F0Config = F0Config(),
                   steps: int = 1500, batch_size: int = 32, segment: int = 64, lr: float = 2e-3,
                   seed: int = 0, max_hours: float | None = None, threads: int = 1,
                   show_progress: bool = True) -> Path:
    """Train the VQ-VAE on ``split``'s speaker-normalised F0 and save the tokenizer."""
    if segment % config.downsample or steps < 1:
        raise ConfigError(f"segment ({segment}) must be a multiple of downsample "
                          f"({config.downsample}) and steps ({steps}) >= 1")
    start = time.monotonic()
    tracks = read_tracks(corpus_dir, split, f0_config, max_hours, show_progress=show_progress)
    norm = fit_speaker_norm(tracks)
    inputs = [frame_inputs(t.f0, f0_config.hop_s, norm.offset(t.speaker, t.f0)) for t in tracks]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PitchVQVAE(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    losses: dict[str, float] = {}
    with progress_bar("pitch VQ-VAE", total=steps, unit="steps", enabled=show_progress) as advance:
        for step in range(steps):
            x, mask = _batch(inputs, batch_size, segment, rng)
            recon, codes, commit = model(x)
            count = mask.sum().clamp(min=1)
            weight = mask * (0.1 + 0.9 * x[:, 1])  # interpolated (unvoiced) F0 matters less
            f0_loss = (((recon[:, 0] - x[:, 0]) ** 2) * weight).sum() / weight.sum().clamp(min=1)
            vuv_loss = (nn.functional.binary_cross_entropy_with_logits(
                recon[:, 1], x[:, 1], reduction="none") * mask).sum() / count
            loss = f0_loss + 0.5 * vuv_loss + commit
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses = {"f0_mse": f0_loss.item(), "vuv_bce": vuv_loss.item(), "commit": commit.item(),
                      "codes_used": int(codes.unique().numel())}
            advance(f0_mse=losses["f0_mse"], codes=losses["codes_used"])
    training = {"corpus": str(Path(corpus_dir).resolve()), "split": split, "steps": steps,
                "batch_size": batch_size, "segment": segment, "lr": lr, "seed": seed,
                "utterances": len(tracks), "final": losses,
                "seconds": round(time.monotonic() - start, 1)}
    tok = PitchVQTokenizer(model, config, norm, f0_config, info={"training": training})
    path = tok.save(out_dir)
    log.info("saved pitch-VQ tokenizer to %s (%s)", path, losses)
    return path
