"""Discriminators and GAN losses for the generator (HiFi-GAN / Vocos recipe, narrow for CPU).

* ``MultiPeriodDiscriminator`` (HiFi-GAN, Kong et al. 2020): the waveform folded by periods
  2, 3, 5, 7, 11 into 2-D, strided convs along time; it judges periodic (pitch) structure.
* ``MultiResolutionDiscriminator`` (UnivNet, Jang et al. 2021; used by Vocos): 2-D convs over
  STFT magnitudes at three resolutions; it judges the spectral texture that an L1 mel loss
  averages away.

Losses are least squares (HiFi-GAN) plus feature matching: the L1 distance between the
discriminators' hidden activations on real and generated audio, a dense and stable signal from
the first GAN step on, which matters when the budget is a few hundred steps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Features = list[torch.Tensor]


def conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
    """Leaky-ReLU conv layers then a 1-channel output conv: (scores (B, -1), every activation)."""
    feats = []
    for conv in convs:
        x = nn.functional.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = post(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        chans = (1, *channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3, 1) if i < len(channels) - 1
                                  else (1, 1), padding=(2, 0)))
            for i in range(len(channels)))
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, Features]:  # wav (B, T)
        b, t = wav.shape
        pad = (-t) % self.period
        x = nn.functional.pad(wav, (0, pad), mode="reflect") if pad else wav
        x = x.reshape(b, 1, -1, self.period)                       # (B, 1, T / p, p)
        return conv_stack(self.convs, self.post, x)


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, channels, (7, 5), (2, 1), padding=(3, 2))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            weight_norm(nn.Conv2d(channels, channels, 3, padding=1)),
        ])
        self.post = weight_norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, Features]:
        spec = torch.stft(wav, self.n_fft, self.hop, window=self.window, return_complex=True)
        x = spec.abs().clamp(min=1e-5).log()[:, None]              # (B, 1, F, frames)
        return conv_stack(self.convs, self.post, x)


class Discriminators(nn.Module):
    """Multi-period + multi-resolution; returns one (score, features) pair per sub-discriminator."""

    def __init__(self, width: int = 16, periods: tuple[int, ...] = (2, 3, 5, 7, 11),
                 resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (256, 64))) -> None:
        super().__init__()
        self.subs = nn.ModuleList(
            [PeriodDiscriminator(p, (width, 2 * width, 4 * width, 4 * width)) for p in periods]
            + [ResolutionDiscriminator(n, h, width) for n, h in resolutions])

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, Features]]:
        return [d(wav) for d in self.subs]


def discriminator_loss(real: list[tuple[torch.Tensor, Features]],
                       fake: list[tuple[torch.Tensor, Features]]) -> torch.Tensor:
    """Least squares: real scores -> 1, generated -> 0 (mean over sub-discriminators)."""
    loss = sum(((1 - r) ** 2).mean() + (f ** 2).mean() for (r, _), (f, _) in zip(real, fake))
    return loss / len(real)


def generator_loss(fake: list[tuple[torch.Tensor, Features]]) -> torch.Tensor:
    """Least squares: generated scores -> 1."""
    return sum(((1 - f) ** 2).mean() for f, _ in fake) / len(fake)


def feature_matching_loss(real: list[tuple[torch.Tensor, Features]],
                          fake: list[tuple[torch.Tensor, Features]]) -> torch.Tensor:
    """Mean L1 between real (detached) and generated hidden activations, per layer."""
    total, count = 0.0, 0
    for (_, rf), (_, ff) in zip(real, fake):
        for r, f in zip(rf, ff):
            total = total + (r.detach() - f).abs().mean()
            count += 1
    return total / count
