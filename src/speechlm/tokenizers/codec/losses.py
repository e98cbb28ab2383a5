"""Codec training losses: multi-scale mel + waveform L1, and the EnCodec adversarial setup.

* ``MultiScaleMelLoss``: L1 + L2 between mel spectrograms at five STFT sizes (EnCodec's
  reconstruction loss, 64 bands at windows 2^6..2^10 samples, hop = window / 4).
* ``MSSTFTDiscriminator``: EnCodec's multi-scale STFT discriminator in miniature; each scale sees
  the complex STFT (real and imaginary parts as two channels) through a small 2-D conv stack and
  returns its logits plus every intermediate feature map (for feature matching).
* Hinge losses for both players and the relative L1 feature-matching loss (EnCodec eq. 2).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from speechlm.tokenizers.semantic.dsp import mel_filterbank

MEL_SCALES = (64, 128, 256, 512, 1024)
DISC_SCALES = (512, 256, 128)


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of L1(log-mel) + L2(log-mel); (B, 1, L) audio on both sides."""

    def __init__(self, scales: tuple[int, ...] = MEL_SCALES, n_mels: int = 64) -> None:
        super().__init__()
        self.scales = scales
        for n_fft in scales:
            self.register_buffer(f"fbank_{n_fft}", mel_filterbank(min(n_mels, n_fft // 4), n_fft),
                                 persistent=False)
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, audio: torch.Tensor, n_fft: int) -> torch.Tensor:
        spec = torch.stft(audio.squeeze(1), n_fft, n_fft // 4, window=getattr(self, f"window_{n_fft}"),
                          return_complex=True).abs()                           # (B, F, T)
        mel = getattr(self, f"fbank_{n_fft}") @ spec                            # (B, M, T)
        return torch.log(mel.clamp(min=1e-5))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = pred.new_zeros(())
        for n_fft in self.scales:
            a, b = self.log_mel(pred, n_fft), self.log_mel(target, n_fft)
            loss = loss + (a - b).abs().mean() + F.mse_loss(a, b)
        return loss / len(self.scales)


class STFTDiscriminator(nn.Module):
    """One scale: complex STFT (B, 2, T, F) -> 2-D convs dilated in time -> logits (B, 1, T', F')."""

    def __init__(self, n_fft: int, filters: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

        def conv(c_in, c_out, kernel, stride=(1, 1), dilation=(1, 1)):
            padding = ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)
            return weight_norm(nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation))

        self.convs = nn.ModuleList([
            conv(2, filters, (3, 9), (1, 2)),
            conv(filters, filters, (3, 9), (1, 2), (1, 1)),
            conv(filters, filters, (3, 9), (1, 2), (2, 1)),
            conv(filters, filters, (3, 9), (1, 2), (4, 1)),
            conv(filters, filters, (3, 3)),
        ])
        self.out = conv(filters, 1, (3, 3))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(audio.squeeze(1), self.n_fft, self.n_fft // 4, window=self.window,
                          return_complex=True)                                  # (B, F, T)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)          # (B, 2, T, F)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.out(x), features


class MSSTFTDiscriminator(nn.Module):
    """Discriminators at several STFT resolutions; returns per-scale logits and feature maps."""

    def __init__(self, filters: int = 8, scales: tuple[int, ...] = DISC_SCALES) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, filters) for n in scales)

    def forward(self, audio: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(audio) for d in self.discriminators]


def discriminator_hinge_loss(real: list, fake: list) -> torch.Tensor:
    """Mean over scales of E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    loss = sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake))
    return loss / len(real)


def generator_hinge_loss(fake: list) -> torch.Tensor:
    """Mean over scales of E[max(0, 1 - D(G(z)))]."""
    return sum(F.relu(1 - f).mean() for f, _ in fake) / len(fake)


def feature_matching_loss(real: list, fake: list) -> torch.Tensor:
    """Mean over scales and layers of |D_l(x) - D_l(G(z))|_1 / mean |D_l(x)| (EnCodec)."""
    terms = [(fr - ff).abs().mean() / fr.abs().mean().clamp(min=1e-5)
             for (_, feats_r), (_, feats_f) in zip(real, fake)
             for fr, ff in zip(feats_r, feats_f)]
    return sum(terms) / len(terms)


def semantic_distillation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity per frame, averaged: (B, N, D) prediction vs (B, N, D) teacher frames."""
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
