"""The only module that reads, writes, resamples and checks audio.

Everything in speechlm works on mono float32 at ``SAMPLE_RATE`` (16 kHz). Audio is decoded with
soundfile (no torchaudio/torchcodec) and resampled with soxr.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from speechlm.core.errors import AudioError

SAMPLE_RATE = 16_000


def to_mono_float32(samples: np.ndarray) -> np.ndarray:
    """Average channels (soundfile gives (T, C)) and cast to float32."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.dtype.kind in "iu":  # integer PCM -> [-1, 1)
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    return samples.astype(np.float32, copy=False)


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling with soxr; a no-op when the rates already match."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def check_audio(samples: np.ndarray, source: str, max_seconds: float | None = None,
                rate: int = SAMPLE_RATE) -> np.ndarray:
    """Reject audio that would poison training; returns the samples unchanged when they pass."""
    if samples.size == 0:
        raise AudioError(f"{source}: audio is empty (0 samples)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{source}: audio contains NaN or Inf samples")
    if max_seconds is not None and samples.size / rate > max_seconds:
        raise AudioError(
            f"{source}: audio is {samples.size / rate:.1f} s, longer than --max-seconds {max_seconds:g}")
    return samples


def read_audio(source: str | Path | bytes, target_rate: int = SAMPLE_RATE,
               max_seconds: float | None = None) -> np.ndarray:
    """Decode a file path or encoded bytes to checked mono float32 at ``target_rate``."""
    name = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)) and not Path(source).is_file():
        raise AudioError(f"{name}: file not found")
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        samples, rate = sf.read(handle, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        raise AudioError(f"{name}: cannot decode audio ({err})") from None
    samples = check_audio(to_mono_float32(samples), name)
    samples = check_audio(resample(samples, rate, target_rate), name, max_seconds, target_rate)
    return samples


def encode_flac(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """Lossless 16-bit FLAC bytes, the storage format of corpus shards."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV (what browsers and players expect)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16")
