"""Unit vocoder: units (+ speaker) -> log-mel (acoustic model) -> waveform (Vocos-style iSTFT head).

Both parts are small convolutional nets that train on 2 CPU cores in minutes:

* ``UnitToMel``: unit embedding + speaker embedding at the 50 Hz unit grid (units repeated by
  their durations), a dilated residual conv stack, and a linear layer emitting two 80-band log-mel
  frames per unit frame (100 Hz).
* ``MelVocoder``: Vocos (Siuzdenko 2023) in miniature: ConvNeXt blocks over mel frames predict
  STFT magnitude and phase; an inverse STFT gives samples. Trained without a GAN (multi-resolution
  STFT + mel losses) to fit the CPU budget.
* ``griffin_lim``: the non-neural baseline from the same predicted mel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from speechlm.tokenizers.semantic.dsp import mel_filterbank, stft_magnitude

MEL_HOP, MEL_WIN, MEL_NFFT, N_MELS = 160, 640, 1024, 80


@dataclass(frozen=True)
class VocoderConfig:
    vocab_size: int = 100
    n_speakers: int = 0         # training speakers; index 0 means "unknown / average voice"
    dim: int = 192              # acoustic model width
    layers: int = 6
    voc_dim: int = 128          # vocoder width
    voc_layers: int = 4
    n_fft: int = 640            # iSTFT head
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def mel_spectrogram(samples: torch.Tensor, fbank: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T // 160, 80) natural-log mel *amplitude* at 100 Hz (floored at 1e-5)."""
    mag = stft_magnitude(samples, MEL_WIN, MEL_HOP, MEL_NFFT)
    return torch.log(torch.clamp(mag @ fbank.T, min=1e-5))


class ResConv(nn.Module):
    def __init__(self, dim: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 5, padding=2 * dilation, dilation=dilation)
        self.norm = nn.GroupNorm(1, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, N)
        return x + self.drop(nn.functional.gelu(self.norm(self.conv(x))))


class UnitToMel(nn.Module):
    """(B, N) frame-level units, (B,) speaker ids -> (B, 2N, 80) log-mel."""

    def __init__(self, c: VocoderConfig) -> None:
        super().__init__()
        self.units = nn.Embedding(c.vocab_size, c.dim)
        self.speakers = nn.Embedding(c.n_speakers + 1, c.dim)
        self.stack = nn.Sequential(*(ResConv(c.dim, d, c.dropout)
                                     for d in [1, 2, 4, 1, 2, 4, 1, 2][: c.layers]))
        self.out = nn.Linear(c.dim, 2 * N_MELS)

    def forward(self, units: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        x = self.units(units) + self.speakers(speakers)[:, None, :]       # (B, N, D)
        x = self.stack(x.transpose(1, 2)).transpose(1, 2)                 # (B, N, D)
        b, n, _ = x.shape
        return self.out(x).reshape(b, 2 * n, N_MELS) - 5.0                # (B, 2N, 80), log-mel prior


class ConvNeXt(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 3 * dim)
        self.pw2 = nn.Linear(3 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, F)
        y = self.norm(self.dw(x).transpose(1, 2))
        y = self.pw2(nn.functional.gelu(self.pw1(y))) * self.scale
        return x + y.transpose(1, 2)


class MelVocoder(nn.Module):
    """(B, F, 80) log-mel at 100 Hz -> (B, F * 160) samples via magnitude + phase and iSTFT."""

    def __init__(self, c: VocoderConfig) -> None:
        super().__init__()
        self.n_fft = c.n_fft
        self.inp = nn.Conv1d(N_MELS, c.voc_dim, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXt(c.voc_dim) for _ in range(c.voc_layers)))
        self.norm = nn.LayerNorm(c.voc_dim)
        self.out = nn.Linear(c.voc_dim, c.n_fft + 2)
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.inp(mel.transpose(1, 2)))                  # (B, D, F)
        x = self.out(self.norm(x.transpose(1, 2))).transpose(1, 2)      # (B, n_fft + 2, F)
        log_mag, phase = x.chunk(2, dim=1)                               # (B, n_fft/2 + 1, F) each
        mag = torch.exp(torch.clamp(log_mag, max=6.0))
        spec = torch.polar(mag, phase)
        n_frames = mel.shape[1]
        return torch.istft(spec, self.n_fft, MEL_HOP, self.n_fft, self.window, center=True,
                           length=n_frames * MEL_HOP)


def stft_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1 (Parallel WaveGAN)."""
    loss = pred.new_zeros(())
    for n_fft, hop in ((512, 128), (1024, 256), (256, 64)):
        window = torch.hann_window(n_fft, device=pred.device)
        sp = torch.stft(pred, n_fft, hop, window=window, return_complex=True).abs() + 1e-5
        st = torch.stft(target, n_fft, hop, window=window, return_complex=True).abs() + 1e-5
        loss = loss + torch.linalg.norm(st - sp) / torch.linalg.norm(st) + (sp.log() - st.log()).abs().mean()
    return loss / 3


def griffin_lim(log_mel: np.ndarray, iterations: int = 32, seed: int = 0) -> np.ndarray:
    """Baseline: (F, 80) log-mel amplitude -> samples via the filterbank pseudo-inverse + Griffin-Lim."""
    fbank = mel_filterbank(N_MELS, MEL_NFFT)                                  # (80, 513)
    mag = torch.clamp(torch.linalg.pinv(fbank) @ torch.from_numpy(np.exp(log_mel)).T.float(), min=0)
    mag = torch.cat([mag, mag[:, -1:]], dim=1)  # (513, F + 1): centred STFT frames of F * hop samples
    window = torch.hann_window(MEL_WIN)
    gen = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * np.pi * torch.rand(mag.shape, generator=gen))
    length = log_mel.shape[0] * MEL_HOP
    for _ in range(iterations):
        wav = torch.istft(mag * angles, MEL_NFFT, MEL_HOP, MEL_WIN, window, length=length)
        spec = torch.stft(wav, MEL_NFFT, MEL_HOP, MEL_WIN, window, return_complex=True)
        angles = torch.exp(1j * spec.angle())
    wav = torch.istft(mag * angles, MEL_NFFT, MEL_HOP, MEL_WIN, window, length=length)
    return (wav / max(1.0, float(wav.abs().max()) / 0.95)).numpy().astype(np.float32)
