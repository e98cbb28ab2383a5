"""Signal processing shared by the extractors and the vocoder: framing, STFT, mel, MFCC.

All features share one frame grid: frame ``i`` is centred at ``(i + 0.5) * hop`` samples and a
clip of ``n`` samples gives ``n // hop`` frames, so labels in seconds map to frames with
``floor(t * rate)`` whatever the extractor.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from speechlm.core.errors import AudioError
from speechlm.data.audio import SAMPLE_RATE, check_audio

HOP = 320                  # samples per unit frame (20 ms, 50 Hz), as HuBERT
FRAME_RATE = SAMPLE_RATE / HOP
MIN_SAMPLES = 400          # one 25 ms analysis window


def check_clip(samples: np.ndarray, source: str = "audio") -> np.ndarray:
    """Mono float32 with finite values and at least one analysis window, or ``AudioError``."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"{source}: expected mono samples (1-D array), got shape {samples.shape}")
    check_audio(samples, source)
    if samples.size < MIN_SAMPLES:
        raise AudioError(f"{source}: audio is {samples.size} samples ({samples.size / SAMPLE_RATE * 1000:.1f}"
                         f" ms), shorter than one {MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms frame")
    return samples


def frame_signal(x: torch.Tensor, win: int, hop: int) -> torch.Tensor:
    """(T,) -> (T // hop, win) windows centred at (i + 0.5) * hop, zero padded at the edges."""
    n = x.shape[-1] // hop
    left = (win - hop) // 2
    right = max(0, (n - 1) * hop + win - left - x.shape[-1])
    x = torch.nn.functional.pad(x, (left, right))
    return x.unfold(-1, win, hop)[..., :n, :]


def stft_magnitude(x: torch.Tensor, win: int, hop: int, n_fft: int) -> torch.Tensor:
    """(..., T) -> (..., T // hop, n_fft // 2 + 1) magnitude with a Hann window."""
    frames = frame_signal(x, win, hop) * torch.hann_window(win, periodic=True, dtype=x.dtype)
    return torch.fft.rfft(frames, n=n_fft).abs()


def mel_filterbank(n_mels: int, n_fft: int, rate: int = SAMPLE_RATE, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """HTK-style triangular filters, (n_mels, n_fft // 2 + 1), each normalised to unit area (Slaney)."""
    fmax = fmax or rate / 2

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def log_mel(x: torch.Tensor, n_mels: int = 80, win: int = 400, hop: int = HOP, n_fft: int = 512,
            fbank: torch.Tensor | None = None) -> torch.Tensor:
    """(T,) -> (T // hop, n_mels) natural-log mel energies (floored at 1e-5)."""
    fbank = mel_filterbank(n_mels, n_fft) if fbank is None else fbank
    return torch.log(torch.clamp(stft_magnitude(x, win, hop, n_fft) ** 2 @ fbank.T, min=1e-5))


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II, (n_in, n_out)."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    basis = torch.cos(math.pi / n_in * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


def deltas(feats: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Regression deltas over time (Kaldi/HTK formula), (N, D) -> (N, D)."""
    padded = torch.nn.functional.pad(feats.T[None], (width, width), mode="replicate")[0].T
    n = feats.shape[0]
    num = sum(k * (padded[width + k: width + k + n] - padded[width - k: width - k + n])
              for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def mfcc(x: torch.Tensor, n_ceps: int = 13, n_mels: int = 40, with_deltas: bool = True) -> torch.Tensor:
    """(T,) -> (T // HOP, 39): 13 MFCCs + deltas + delta-deltas (HuBERT's first-iteration input)."""
    ceps = log_mel(x, n_mels=n_mels) @ dct_matrix(n_mels, n_ceps)
    if not with_deltas:
        return ceps
    d1 = deltas(ceps)
    return torch.cat([ceps, d1, deltas(d1)], dim=1)
