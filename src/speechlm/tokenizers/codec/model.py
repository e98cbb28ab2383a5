"""A small neural codec at 16 kHz with residual vector quantization (EnCodec/SoundStream layout).

Strides (4, 4, 4, 5) give one latent frame per 320 samples: **50 Hz**, the frame grid of the
semantic tokenizers (frame ``j`` covers samples ``[320 j, 320 (j + 1))``), so codebook 1 can be
distilled from their features frame by frame.

Encoder (``encoder``): ``mel`` (default) reads a 100 Hz log-mel spectrogram through ConvNeXt
blocks; ``seanet`` is EnCodec's waveform encoder (a residual unit and a strided conv per stride).
Decoder (``decoder``): ``istft`` (default) is Vocos-style, ConvNeXt blocks at 50 Hz predicting STFT
magnitude and phase; ``seanet`` mirrors the SEANet encoder with transposed convs. The defaults
learn within CPU budgets, where the SEANet pair had passed nothing through after 500 steps
(docs/codec.md).

Quantizer: ``vector_quantize_pytorch.ResidualVQ`` (k-means initialisation, EMA codebook updates,
dead-code restart, quantizer dropout so that the first k codebooks alone decode to audio), as in
SoundStream/EnCodec. Optionally (``distill_dim > 0``) a linear head maps the first quantizer's
output to a semantic teacher's features (SpeechTokenizer), trained with a cosine loss.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of a codec; everything that ``config.json`` needs to rebuild the weights."""

    channels: int = 16                       # encoder width at 16 kHz, doubled at each stride
    strides: tuple[int, ...] = (4, 4, 4, 5)  # product = hop (samples per frame)
    dim: int = 128                           # latent / codebook dimension
    codebooks: int = 8                       # residual quantizers (K)
    codebook_size: int = 1024                # entries per codebook (V)
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.02        # EMA frames/step below which an entry is restarted
                                             # (training sets it from dead_code_fraction)
    kmeans_iters: int = 10
    quantizer_dropout: bool = True           # train on the first k of K codebooks, k random
    distill_dim: int = 0                     # teacher feature dim (0 = no semantic distillation)
    encoder: str = "mel"                     # "mel" (log-mel + ConvNeXt) or "seanet" (strided convs)
    decoder: str = "istft"                   # "istft" (Vocos-style) or "seanet" (mirror of the encoder)
    convnext_dim: int = 256                  # width of the mel encoder / istft decoder
    convnext_layers: int = 6                 # ConvNeXt blocks in each of them

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop

    def bitrate(self, n_codebooks: int | None = None) -> float:
        """Nominal bits per second with the first ``n_codebooks`` (default all)."""
        k = self.codebooks if n_codebooks is None else n_codebooks
        return self.frame_rate * k * math.log2(self.codebook_size)

    def validate(self) -> list[str]:
        problems = []
        if self.channels < 1 or self.dim < 1:
            problems.append(f"channels={self.channels}, dim={self.dim}: must be positive")
        if not self.strides or min(self.strides) < 1:
            problems.append(f"strides={list(self.strides)}: need positive integers")
        if self.codebooks < 1:
            problems.append(f"codebooks={self.codebooks}: need at least 1")
        if self.codebook_size < 2:
            problems.append(f"codebook_size={self.codebook_size}: need at least 2")
        if not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay={self.ema_decay}: must be in (0, 1)")
        if self.encoder not in ENCODERS:
            problems.append(f"encoder={self.encoder!r}: must be one of {sorted(ENCODERS)}")
        if self.decoder not in DECODERS:
            problems.append(f"decoder={self.decoder!r}: must be one of {sorted(DECODERS)}")
        if self.convnext_dim < 1 or self.convnext_layers < 1:
            problems.append(f"convnext_dim={self.convnext_dim}, convnext_layers={self.convnext_layers}: "
                            "must be positive")
        if self.encoder == "mel" and self.hop % 2:
            problems.append(f"strides={list(self.strides)}: the mel encoder needs an even hop")
        return problems

    def to_dict(self) -> dict:
        return {**asdict(self), "strides": list(self.strides)}

    @classmethod
    def from_dict(cls, values: dict) -> CodecConfig:
        values = dict(values)
        if "strides" in values:
            values["strides"] = tuple(values["strides"])
        return cls(**values)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv1d:
    return weight_norm(nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation))


class PadConv(nn.Module):
    """Conv1d with 'same'-style zero padding so a stride-s conv maps L samples to L / s frames."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = _conv(c_in, c_out, kernel, stride, dilation)
        total = (kernel - 1) * dilation + 1 - stride
        self.pad = (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> (B, C', L / stride)
        return self.conv(F.pad(x, self.pad))


class ResUnit(nn.Module):
    """SEANet residual unit: ELU, dilated 3-tap conv to C/2, ELU, 1x1 conv back to C, plus skip."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ELU(), PadConv(channels, channels // 2, 3, dilation=dilation),
                                   nn.ELU(), PadConv(channels // 2, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Upsample(nn.Module):
    """Transposed conv (kernel 2s, stride s) trimmed so L frames become exactly L * s samples."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride))
        self.trim = (stride // 2, stride - stride // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., self.trim[0]: y.shape[-1] - self.trim[1]]


class SEANetEncoder(nn.Module):
    """(B, 1, L) samples -> (B, dim, L / hop) latent frames through strided convs (EnCodec)."""

    def __init__(self, c: CodecConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [PadConv(1, c.channels, 7)]
        ch = c.channels
        for stride in c.strides:
            layers += [ResUnit(ch), nn.ELU(), PadConv(ch, 2 * ch, 2 * stride, stride)]
            ch *= 2
        layers += [nn.ELU(), PadConv(ch, c.dim, 3)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SEANetDecoder(nn.Module):
    """(B, dim, N) latent frames -> (B, 1, N * hop) samples: the encoder mirrored, transposed convs."""

    def __init__(self, c: CodecConfig) -> None:
        super().__init__()
        ch = c.channels * 2 ** len(c.strides)
        layers: list[nn.Module] = [PadConv(c.dim, ch, 7)]
        for stride in reversed(c.strides):
            layers += [nn.ELU(), Upsample(ch, ch // 2, stride), ResUnit(ch // 2)]
            ch //= 2
        layers += [nn.ELU(), PadConv(ch, 1, 7)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvNeXt(nn.Module):
    """ConvNeXt block over frames: depthwise 7-tap conv, LayerNorm, 3x MLP, scaled residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 3 * dim)
        self.pw2 = nn.Linear(3 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, N)
        y = self.norm(self.dw(x).transpose(1, 2))
        y = self.pw2(F.gelu(self.pw1(y))) * self.scale
        return x + y.transpose(1, 2)


class ISTFTDecoder(nn.Module):
    """(B, dim, N) latent frames -> (B, 1, N * hop) samples, Vocos-style (Siuzdenko 2023).

    ConvNeXt blocks at the frame rate predict each frame's STFT log-magnitude and phase (window
    4 x hop, hop = the codec hop, as Vocos' EnCodec decoder); an inverse STFT gives the samples.
    All the work happens at 50 Hz, so it learns in a few hundred CPU steps and decodes far faster
    than transposed convs at 16 kHz.
    """

    def __init__(self, c: CodecConfig) -> None:
        super().__init__()
        self.hop, self.n_fft = c.hop, 4 * c.hop
        self.inp = nn.Conv1d(c.dim, c.convnext_dim, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXt(c.convnext_dim) for _ in range(c.convnext_layers)))
        self.norm = nn.LayerNorm(c.convnext_dim)
        self.out = nn.Linear(c.convnext_dim, self.n_fft + 2)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.inp(z))                                       # (B, D, N)
        x = self.out(self.norm(x.transpose(1, 2))).transpose(1, 2)         # (B, n_fft + 2, N)
        log_mag, phase = x.chunk(2, dim=1)                                  # (B, n_fft / 2 + 1, N)
        spec = torch.polar(torch.exp(log_mag.clamp(max=6.0)), phase)
        audio = torch.istft(spec, self.n_fft, self.hop, self.n_fft, self.window, center=True,
                            length=z.shape[-1] * self.hop)
        return audio[:, None]                                               # (B, 1, N * hop)


class MelEncoder(nn.Module):
    """(B, 1, L) samples -> (B, dim, L / hop) latent frames from a log-mel spectrogram.

    80-band log-mel at twice the frame rate (window 2 x hop, hop / 2: 40 and 10 ms at 50 Hz), ConvNeXt
    blocks, then a stride-2 conv to the frame rate; frame j sees the mel frames centred on samples
    hop * j and hop * j + hop / 2. Starting from a spectrogram rather than raw samples is what lets
    the codec learn in CPU step counts; the SEANet encoder needs far more steps to get there.
    """

    def __init__(self, c: CodecConfig) -> None:
        super().__init__()
        from speechlm.tokenizers.semantic.dsp import mel_filterbank

        self.hop, self.n_fft = c.hop // 2, 2 * c.hop
        self.register_buffer("fbank", mel_filterbank(80, 2 * c.hop), persistent=False)
        self.register_buffer("window", torch.hann_window(2 * c.hop), persistent=False)
        self.inp = nn.Conv1d(80, c.convnext_dim, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXt(c.convnext_dim) for _ in range(c.convnext_layers)))
        self.norm = nn.LayerNorm(c.convnext_dim)
        self.down = nn.Conv1d(c.convnext_dim, c.dim, 2, stride=2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio.squeeze(1), self.n_fft, self.hop, window=self.window,
                          return_complex=True).abs()                            # (B, F, 2N + 1)
        mel = torch.log(torch.clamp(self.fbank @ spec[..., :-1], min=1e-5))     # (B, 80, 2N)
        x = self.blocks(self.inp(mel))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.down(x)                                                      # (B, dim, N)


ENCODERS = {"mel": MelEncoder, "seanet": SEANetEncoder}
DECODERS = {"istft": ISTFTDecoder, "seanet": SEANetDecoder}


@dataclass
class CodecOutput:
    """What one training forward pass returns."""

    audio: torch.Tensor          # (B, 1, L) reconstruction
    codes: torch.Tensor          # (B, N, K) indices of every codebook (dropout only cuts the decoder's input)
    commit_loss: torch.Tensor    # () summed over the codebooks used
    semantic: torch.Tensor | None = None  # (B, N, distill_dim) prediction from codebook 1
    extras: dict = field(default_factory=dict)


class CodecModel(nn.Module):
    """Encoder -> ResidualVQ -> decoder, plus the optional distillation head on codebook 1."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        self.config = config
        self.encoder = ENCODERS[config.encoder](config)
        self.decoder = DECODERS[config.decoder](config)
        self.quantizer = ResidualVQ(
            dim=config.dim, num_quantizers=config.codebooks, codebook_size=config.codebook_size,
            decay=config.ema_decay, kmeans_init=True, kmeans_iters=config.kmeans_iters,
            threshold_ema_dead_code=config.dead_code_threshold,
            commitment_weight=1.0)  # quantizer dropout: forward() (every codebook keeps learning)
        self.semantic_head = nn.Linear(config.dim, config.distill_dim) if config.distill_dim else None

    def forward(self, audio: torch.Tensor, dropout_seed: int | None = None) -> CodecOutput:
        """(B, 1, L) with L a multiple of the hop -> reconstruction, codes, losses.

        Quantizer dropout (``dropout_seed`` picks k uniformly in 1..K) cuts what the decoder sees to
        the first k codebooks, but every codebook still quantizes its residual and updates its
        k-means/EMA state on every step. The library's own dropout skips the codebooks past k, so
        codebook j saw only (K - j + 1) / K of the steps (codebook 8 of 8: one in eight) and its
        entries stayed where the early, untrained encoder had put them (docs/codec.md).
        """
        latent = self.encoder(audio).transpose(1, 2)                          # (B, N, dim)
        k = self.config.codebooks
        if self.training and self.config.quantizer_dropout and dropout_seed is not None:
            k = random.Random(dropout_seed).randint(1, self.config.codebooks)
        residual, quantized, commit, codes, first = latent, 0, 0, [], None
        for j, vq in enumerate(self.quantizer.layers):
            q, idx, loss = vq(residual)                                       # (B, N, dim), (B, N)
            residual = residual - q.detach()
            codes.append(idx)
            if j < k:
                quantized, commit = quantized + q, commit + loss.sum()
            if first is None:
                first = q.detach()
        semantic = None
        if self.semantic_head is not None:
            # straight-through: the value of codebook 1's entry, the gradient of the encoder output
            semantic = self.semantic_head(latent + (first - latent).detach())
        audio_hat = self.decoder(quantized.transpose(1, 2))                   # (B, 1, L)
        return CodecOutput(audio_hat, torch.stack(codes, -1), commit, semantic)

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """(B, 1, L) -> (B, K, N) int64 codes of the first ``n_codebooks`` quantizers."""
        latent = self.encoder(audio).transpose(1, 2)
        _, codes, _ = self.quantizer(latent)
        k = self.config.codebooks if n_codebooks is None else n_codebooks
        return codes[..., :k].transpose(1, 2)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, k, N) codes of the first k codebooks -> (B, 1, N * hop) samples."""
        return self.decoder(self.quantizer.get_output_from_indices(self._full(codes)).transpose(1, 2))

    @torch.inference_mode()
    def code_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, k, N) codes -> (k, B, N, dim) the codebook entry each index stands for."""
        return self.quantizer.get_codes_from_indices(self._full(codes))[: codes.shape[1]]

    def _full(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, k, N) -> (B, N, K) with -1 (no contribution) for the codebooks not given."""
        missing = self.config.codebooks - codes.shape[1]
        return F.pad(codes, (0, 0, 0, missing), value=-1).transpose(1, 2)
