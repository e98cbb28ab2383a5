"""Unit vocoder networks: deduplicated units + durations (+ speaker, + extra per-frame streams)
-> log-mel (acoustic model) -> waveform (Vocos-style generator).

* ``AcousticModel``: FastSpeech-style. A conv encoder reads the *deduplicated* units (phonetic
  context per unit, not per frame), a length regulator repeats each unit's vector by its duration
  and adds where each frame sits inside its run, extra per-frame streams (e.g. F0) and the speaker
  vector join there, and a dilated conv decoder at the unit frame rate emits ``mel_per_frame``
  80-band log-mel frames (100 Hz) per unit frame.
* ``MelGenerator``: Vocos (Siuzdenko 2023) in miniature: ConvNeXt blocks over mel frames predict
  STFT magnitude and phase; an inverse STFT gives samples. All its work happens at 100 Hz, so it
  trains on 2 CPU cores; the discriminators (``speechlm.vocoder.discriminators``) make it sharp.
* ``source=True`` (training's default ``source: null`` picks it for vocoders with an extra
  stream, i.e. the F0-aware one; units-only vocoders keep the phase generator, which read better
  to Whisper in docs/vocoder.md's comparison): a source-filter generator (harmonic-plus-noise,
  as in NSF and DDSP). Learning phase from scratch needs far more steps than a CPU budget: after
  800 steps the phase-predicting generator spoke every voice as a 100 Hz buzz (its frame rate),
  whatever the input's pitch. Here the acoustic model also predicts F0 and voicing per mel frame,
  a band-limited pulse train at that F0 and white noise are taken to the STFT domain, and the
  generator predicts one magnitude (filter) per bin for each: the pitch is the F0 by
  construction, and an F0 stream (``streams``) moves it.
* ``griffin_lim``: the non-neural baseline from the same predicted mel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from speechlm.data.audio import SAMPLE_RATE
from speechlm.tokenizers.codec.model import ConvNeXt
from speechlm.tokenizers.semantic.dsp import mel_filterbank, stft_magnitude

MEL_HOP, MEL_WIN, MEL_NFFT, N_MELS = 160, 640, 1024, 80
MEL_RATE = SAMPLE_RATE // MEL_HOP  # 100 mel frames per second
LOG_MEL_FLOOR = float(np.log(1e-5))
F0_CENTRE_HZ = 150.0               # the F0 head predicts log(F0 / 150 Hz)
HARMONIC_CEILING_HZ = 7600.0       # highest partial of the pulse train (below 8 kHz Nyquist)


@dataclass(frozen=True)
class VocoderConfig:
    """Network shapes. ``streams`` names extra continuous per-frame inputs and their widths, e.g.
    ``(("log_f0", 2),)``; the units-only vocoder has none."""

    vocab_size: int = 100
    frame_rate: float = 50.0          # unit frames per second (the tokenizer's)
    speaker_dim: int = 256            # speaker embedding width (Resemblyzer d-vectors)
    streams: tuple[tuple[str, int], ...] = ()
    dim: int = 192                    # acoustic model width
    encoder_layers: int = 3
    decoder_layers: int = 4
    voc_dim: int = 128                # generator width
    voc_layers: int = 4
    n_fft: int = 640                  # generator's iSTFT size (hop = MEL_HOP)
    dropout: float = 0.1
    source: bool = False              # harmonic-plus-noise excitation at a predicted F0 (module doc)

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple((str(n), int(d)) for n, d in self.streams))

    @property
    def mel_per_frame(self) -> int:
        """Mel frames (100 Hz) per unit frame: 2 for 50 Hz units."""
        return round(MEL_RATE / self.frame_rate)

    @property
    def hop(self) -> int:
        """Samples per unit frame."""
        return self.mel_per_frame * MEL_HOP

    def validate(self) -> list[str]:
        bad = []
        ratio = MEL_RATE / self.frame_rate if self.frame_rate > 0 else 0.0
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
            bad.append(f"frame_rate={self.frame_rate}: the vocoder needs a unit frame rate that "
                       f"divides {MEL_RATE} Hz (e.g. 50, 25, 12.5)")
        for key in ("vocab_size", "dim", "encoder_layers", "decoder_layers", "voc_dim", "voc_layers"):
            if getattr(self, key) < 1:
                bad.append(f"{key}={getattr(self, key)} must be >= 1")
        if self.n_fft < 2 * MEL_HOP or self.n_fft % 2:
            bad.append(f"n_fft={self.n_fft} must be even and >= {2 * MEL_HOP}")
        return bad

    def to_dict(self) -> dict:
        out = asdict(self)
        out["streams"] = [list(s) for s in self.streams]
        return out


def mel_spectrogram(samples: torch.Tensor, fbank: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T // 160, 80) natural-log mel *amplitude* at 100 Hz (floored at 1e-5)."""
    mag = stft_magnitude(samples, MEL_WIN, MEL_HOP, MEL_NFFT)
    return torch.log(torch.clamp(mag @ fbank.T, min=1e-5))


class ResConv(nn.Module):
    """Pre-norm residual conv block; ``mask`` (B, 1, N) zeroes padding so it cannot leak."""

    def __init__(self, dim: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, D, N)
        return (x + self.drop(nn.functional.gelu(self.conv(self.norm(x) * mask)))) * mask


def length_regulate(durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, U) durations (0 on padding) -> per frame (B, N): source unit index, 3 position features
    (B, N, 3) = [offset / duration, log duration, log(1 + offset)], and a frame mask (B, N)."""
    lengths = durations.sum(1)
    n = int(lengths.max())
    b, u = durations.shape
    starts = torch.cumsum(durations, 1) - durations                              # (B, U)
    frame = torch.arange(n, device=durations.device)[None, :].expand(b, n)      # (B, N)
    # unit of frame f = number of units starting at or before f, minus one
    index = torch.searchsorted(torch.cumsum(durations, 1).contiguous(), frame.contiguous(),
                               right=True).clamp(max=u - 1)                     # (B, N)
    offset = (frame - starts.gather(1, index)).float()
    dur = durations.gather(1, index).float().clamp(min=1)
    pos = torch.stack([offset / dur, torch.log(dur), torch.log1p(offset)], -1)  # (B, N, 3)
    mask = frame < lengths[:, None]
    return index, pos * mask[..., None], mask


class AcousticModel(nn.Module):
    """(B, U) units + (B, U) durations [+ (B, S) speaker vectors, {name: (B, N, d)} streams]
    -> (B, N * mel_per_frame, 80) log-mel and, with ``source``, (B, N * mel_per_frame, 2) pitch:
    log(F0 / 150 Hz) and a voicing logit per mel frame (None without)."""

    def __init__(self, c: VocoderConfig) -> None:
        super().__init__()
        self.c = c
        self.units = nn.Embedding(c.vocab_size + 1, c.dim, padding_idx=c.vocab_size)  # last = pad
        self.speaker = nn.Linear(c.speaker_dim, c.dim) if c.speaker_dim else None
        self.encoder = nn.ModuleList(ResConv(c.dim, 5, 1, c.dropout) for _ in range(c.encoder_layers))
        self.position = nn.Linear(3, c.dim)
        self.streams = nn.ModuleDict({name: nn.Linear(dim, c.dim) for name, dim in c.streams})
        dilations = [1, 2, 4, 8, 1, 2, 4, 8]
        self.decoder = nn.ModuleList(ResConv(c.dim, 5, dilations[i % 8], c.dropout)
                                     for i in range(c.decoder_layers))
        self.out = nn.Linear(c.dim, c.mel_per_frame * N_MELS)
        self.pitch = nn.Linear(c.dim, c.mel_per_frame * 2) if c.source else None

    def forward(self, units: torch.Tensor, durations: torch.Tensor,
                speaker: torch.Tensor | None = None,
                streams: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = units.shape[0]
        unit_mask = (durations > 0)[:, None, :].float()                           # (B, 1, U)
        x = self.units(units.masked_fill(durations == 0, self.c.vocab_size))     # (B, U, D)
        spk = self.speaker(speaker)[:, :, None] if self.speaker is not None and speaker is not None else 0.0
        x = x.transpose(1, 2) + spk                                               # (B, D, U)
        for layer in self.encoder:
            x = layer(x, unit_mask)
        index, pos, frame_mask = length_regulate(durations)                      # (B, N)
        h = x.gather(2, index[:, None, :].expand(-1, x.shape[1], -1))            # (B, D, N)
        extra = self.position(pos)                                                # (B, N, D)
        for name, proj in self.streams.items():  # the caller checks that every stream is given
            extra = extra + proj(streams[name])
        mask = frame_mask[:, None, :].float()                                     # (B, 1, N)
        h = (h + extra.transpose(1, 2) + spk) * mask
        for layer in self.decoder:
            h = layer(h, mask)
        mel = self.out(h.transpose(1, 2))                                         # (B, N, r * 80)
        mel = mel.reshape(b, -1, N_MELS) - 5.0                                    # (B, N * r, 80)
        floor = torch.full_like(mel, LOG_MEL_FLOOR)  # padding frames read as silence
        frames = mask.transpose(1, 2).repeat_interleave(self.c.mel_per_frame, 1) > 0
        pitch = None if self.pitch is None else self.pitch(h.transpose(1, 2)).reshape(b, -1, 2)
        return torch.where(frames, mel, floor), pitch


def pitch_to_f0(pitch: torch.Tensor) -> torch.Tensor:
    """(..., 2) predicted log(F0 / 150 Hz) + voicing logit -> (...) F0 in Hz, 0 where unvoiced."""
    return torch.where(pitch[..., 1] > 0, F0_CENTRE_HZ * torch.exp(pitch[..., 0]),
                       torch.zeros_like(pitch[..., 0]))


def excitation(f0: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F) F0 in Hz per mel frame (0 = unvoiced) -> (B, F * 160) band-limited pulse train
    (every partial below 7.6 kHz at amplitude 1, silent where unvoiced) and (B, F * 160) white
    noise from ``seed``. F0 and voicing are interpolated between frame centres, so the phase is
    continuous inside a call."""
    b, frames = f0.shape
    length = frames * MEL_HOP

    def up(x: torch.Tensor) -> torch.Tensor:  # per mel frame -> per sample
        return nn.functional.interpolate(x[:, None], size=length, mode="linear",
                                         align_corners=False)[:, 0]

    voiced = (f0 > 0).float()
    # unvoiced frames take the next voiced frame's F0 (the last one's after it), so the pulse
    # fades in and out at a pitch of the utterance
    filled = f0.clone()
    for row in range(b):
        idx = torch.nonzero(f0[row] > 0).flatten()
        if idx.numel():
            following = torch.searchsorted(idx, torch.arange(frames, device=f0.device))
            filled[row] = f0[row, idx[following.clamp(max=idx.numel() - 1)]]
    hz, amp = up(filled), up(voiced)
    phase = torch.remainder(torch.cumsum(hz.double() * (2 * np.pi / SAMPLE_RATE), dim=1),
                            2 * np.pi).float()
    partials = torch.floor(HARMONIC_CEILING_HZ / hz.clamp(min=20.0))
    half = torch.sin(phase / 2)
    # sum_{k=1..K} cos(k phase) in closed form (Dirichlet kernel), K partials per sample
    dirichlet = torch.sin((partials + 0.5) * phase) / (2 * torch.where(half.abs() < 1e-4,
                                                                        torch.ones_like(half), half)) - 0.5
    pulses = torch.where(half.abs() < 1e-4, partials, dirichlet) * amp
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(b, length, generator=gen).to(f0.device)
    return pulses, noise


class MelGenerator(nn.Module):
    """(B, F, 80) log-mel at 100 Hz -> (B, F * 160) samples via magnitude + phase and iSTFT; with
    ``source``, (B, F) F0 too: magnitudes for the pulse train and the noise instead of a phase."""

    def __init__(self, c: VocoderConfig) -> None:
        super().__init__()
        self.n_fft, self.source = c.n_fft, c.source
        self.inp = nn.Conv1d(N_MELS, c.voc_dim, 7, padding=3)
        self.blocks = nn.Sequential(*(ConvNeXt(c.voc_dim) for _ in range(c.voc_layers)))
        self.norm = nn.LayerNorm(c.voc_dim)
        self.out = nn.Linear(c.voc_dim, c.n_fft + 2)
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)

    def forward(self, mel: torch.Tensor, f0: torch.Tensor | None = None,
                seed: int = 0) -> torch.Tensor:
        x = self.blocks(self.inp(mel.transpose(1, 2)))                  # (B, D, F)
        x = self.out(self.norm(x.transpose(1, 2))).transpose(1, 2)      # (B, n_fft + 2, F)
        first, second = x.chunk(2, dim=1)                                # (B, n_fft/2 + 1, F) each
        n_frames = mel.shape[1]
        if not self.source:  # log-magnitude and phase
            spec = torch.polar(torch.exp(torch.clamp(first, max=6.0)), second)
        else:  # filters (log-magnitudes) for the pulse train and for the noise
            if f0 is None or f0.shape != mel.shape[:2]:
                raise ValueError(f"source generator: need F0 per mel frame, shaped "
                                 f"{tuple(mel.shape[:2])}")
            with torch.no_grad():
                pulses, noise = excitation(f0, seed)
                w = self.window
                spectra = [torch.stft(e, self.n_fft, MEL_HOP, self.n_fft, w, center=True,
                                      return_complex=True)[..., :n_frames] for e in (pulses, noise)]
                harmonic = spectra[0] / (w.sum() / 2)          # a partial's bin: magnitude ~1
                aperiodic = spectra[1] / w.square().sum().sqrt()  # white noise: ~1 per bin
            spec = (torch.exp(torch.clamp(first, max=6.0)) * harmonic
                    + torch.exp(torch.clamp(second, max=6.0)) * aperiodic)
        return torch.istft(spec, self.n_fft, MEL_HOP, self.n_fft, self.window, center=True,
                           length=n_frames * MEL_HOP)


STFT_RESOLUTIONS = ((512, 128), (1024, 256), (256, 64))


def stft_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1 (Parallel WaveGAN)."""
    loss = pred.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft, device=pred.device)
        sp = torch.stft(pred, n_fft, hop, window=window, return_complex=True).abs() + 1e-5
        st = torch.stft(target, n_fft, hop, window=window, return_complex=True).abs() + 1e-5
        loss = loss + torch.linalg.norm(st - sp) / torch.linalg.norm(st) + (sp.log() - st.log()).abs().mean()
    return loss / len(STFT_RESOLUTIONS)


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
