"""ssl-tiny: a small HuBERT-style encoder trained here, on the corpus, in minutes on 2 CPU cores.

HuBERT (Hsu et al. 2021) in miniature: a convolutional feature extractor, a transformer, and
masked prediction of k-means cluster ids. Iteration 1 predicts clusters of MFCCs; iteration 2
predicts clusters of the iteration-1 model's own layer features. To be trainable on CPU the conv
extractor reads 100 Hz log-mel frames (per-utterance mean-normalised) instead of raw samples,
and subsamples them 2x to HuBERT's 50 Hz frame rate.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from speechlm.core.progress import progress_bar
from speechlm.tokenizers.semantic.dsp import log_mel, mel_filterbank

log = logging.getLogger(__name__)

MEL_HOP = 160  # the conv extractor reads 100 Hz frames and subsamples 2x


@dataclass(frozen=True)
class SslTinyConfig:
    n_mels: int = 80
    dim: int = 128          # transformer width
    layers: int = 4
    heads: int = 4
    ffn: int = 512
    n_targets: int = 100    # k-means clusters predicted in the current iteration
    dropout: float = 0.1
    mask_prob: float = 0.08  # probability that a frame starts a masked span (HuBERT: 0.08)
    mask_length: int = 5     # span length in frames (HuBERT: 10 at 50 Hz; shorter clips here)
    warp: float = 0.12       # speaker perturbation: input mel axis warped by 1 +- warp (targets clean)

    def to_dict(self) -> dict:
        return asdict(self)


def mel_frontend(samples: torch.Tensor, fbank: torch.Tensor) -> torch.Tensor:
    """(T,) samples -> (2 * (T // 320), n_mels) mean-normalised log-mel at 100 Hz."""
    n = samples.shape[-1] // 320 * 2
    mel = log_mel(samples, n_mels=fbank.shape[0], win=400, hop=MEL_HOP, n_fft=512, fbank=fbank)[:n]
    return mel - mel.mean(dim=0, keepdim=True)


class SslTiny(nn.Module):
    """log-mel (B, 2N, M) -> hidden states [(B, N, D)] * (layers + 1) and target logits."""

    def __init__(self, config: SslTinyConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.extractor = nn.Sequential(
            nn.Conv1d(c.n_mels, c.dim, kernel_size=3, padding=1), nn.GELU(),
            nn.Conv1d(c.dim, c.dim, kernel_size=4, stride=2, padding=1), nn.GELU())
        self.norm_in = nn.LayerNorm(c.dim)
        self.mask_embedding = nn.Parameter(torch.randn(c.dim) * 0.1)
        self.pos_conv = nn.Conv1d(c.dim, c.dim, kernel_size=17, padding=8, groups=16)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(c.dim, c.heads, c.ffn, c.dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(c.layers))
        self.norm_out = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.n_targets)
        self.register_buffer("fbank", mel_filterbank(c.n_mels, 512), persistent=False)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor | None = None,
                padding: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.extractor(mel.transpose(1, 2)).transpose(1, 2)  # (B, N, D)
        x = self.norm_in(x)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_embedding.to(x.dtype), x)
        x = x + nn.functional.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2)
        hidden = [x]
        for block in self.blocks:
            x = block(x, src_key_padding_mask=padding)
            hidden.append(x)
        hidden[-1] = self.norm_out(x)
        return hidden, self.head(hidden[-1])

    @torch.no_grad()
    def features(self, samples: np.ndarray, layer: int) -> np.ndarray:
        """(T,) samples -> (T // 320, D) layer ``layer`` features (0 = after the conv extractor)."""
        mel = mel_frontend(torch.from_numpy(samples), self.fbank)
        hidden, _ = self(mel[None])
        return hidden[layer][0].numpy()


def warp_mel(mel: np.ndarray, factor: float) -> np.ndarray:
    """Vocal-tract-length-style perturbation: read bin m of (..., M) log-mel at m * factor."""
    m = mel.shape[-1]
    pos = np.clip(np.arange(m) * factor, 0, m - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, m - 1)
    frac = (pos - lo).astype(np.float32)
    return mel[..., lo] * (1 - frac) + mel[..., hi] * frac


def span_mask(batch: int, length: int, prob: float, span: int, rng: np.random.Generator) -> np.ndarray:
    """HuBERT/wav2vec 2.0 span masking: each frame starts a span of ``span`` frames with ``prob``."""
    starts = rng.random((batch, length)) < prob
    mask = np.zeros((batch, length), dtype=bool)
    for offset in range(span):
        mask[:, offset:] |= starts[:, : length - offset]
    mask[~mask.any(axis=1), rng.integers(0, length)] = True  # at least one masked frame
    return mask


def train_masked_prediction(model: SslTiny, mels: list[np.ndarray], targets: list[np.ndarray],
                            steps: int, seed: int, batch: int = 16, crop: int = 100,
                            lr: float = 1e-3, max_seconds: float | None = None,
                            description: str = "ssl-tiny", show_progress: bool = True) -> dict:
    """HuBERT masked prediction on random ``crop``-frame (50 Hz) windows; returns loss/accuracy."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    lengths = np.array([t.size for t in targets])
    usable = np.flatnonzero(lengths >= 8)
    weights = lengths[usable] / lengths[usable].sum()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 10)
    model.train()
    start = time.monotonic()
    loss_ema, acc_ema, done = None, None, 0
    with progress_bar(description, total=steps, unit="steps", enabled=show_progress) as advance:
        for step in range(steps):
            # cosine decay over steps or the time budget, whichever runs out first
            frac = step / steps
            if max_seconds:
                frac = max(frac, (time.monotonic() - start) / max_seconds)
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            picks = rng.choice(usable, size=batch, p=weights)
            n = min(crop, int(lengths[picks].min()))
            mel_b = np.zeros((batch, 2 * n, mels[0].shape[1]), dtype=np.float32)
            tgt_b = np.zeros((batch, n), dtype=np.int64)
            for row, idx in enumerate(picks):
                offset = rng.integers(0, lengths[idx] - n + 1)
                mel_b[row] = mels[idx][2 * offset: 2 * (offset + n)]
                if model.config.warp > 0:  # teach speaker invariance: targets come from clean audio
                    mel_b[row] = warp_mel(mel_b[row], 1 + rng.uniform(-1, 1) * model.config.warp)
                tgt_b[row] = targets[idx][offset: offset + n]
            mask = span_mask(batch, n, model.config.mask_prob, model.config.mask_length, rng)
            mask_t = torch.from_numpy(mask)
            _, logits = model(torch.from_numpy(mel_b), mask=mask_t)  # (B, N, K)
            tgt = torch.from_numpy(tgt_b)
            loss = nn.functional.cross_entropy(logits[mask_t], tgt[mask_t])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            acc = (logits[mask_t].argmax(-1) == tgt[mask_t]).float().mean().item()
            loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
            acc_ema = acc if acc_ema is None else 0.95 * acc_ema + 0.05 * acc
            done = step + 1
            advance(1, loss=loss_ema, acc=acc_ema)
            if max_seconds is not None and time.monotonic() - start > max_seconds:
                log.info("%s: stopping at step %d (time budget %.0f s)", description, done, max_seconds)
                break
    model.eval()
    return {"steps": done, "loss": float(loss_ema), "masked_accuracy": float(acc_ema),
            "seconds": time.monotonic() - start}
