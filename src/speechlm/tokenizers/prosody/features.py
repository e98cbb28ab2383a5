"""Pooled prosodic and spectral features of a stretch of speech (style tokens, style classifier).

Per 10 ms frame: log-F0 minus the utterance's mean log-F0 (NaN when unvoiced), energy, spectral
flatness and centroid. Pooling a window gives :data:`FEATURE_NAMES`: pitch level, spread, range,
slope and final rise (the last 80 ms of voicing against the window's median); absolute pitch; loudness and its spread; breathiness (flatness, centroid);
a syllable-rate proxy (voiced onsets per second) and the pause fraction. The utterance mean is
used for every voice (seen or not), so training and held-out voices are treated alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechlm.data.audio import SAMPLE_RATE

FEATURE_NAMES = ("voiced_fraction", "logf0_mean", "logf0_std", "logf0_range", "logf0_slope",
                 "final_rise", "logf0_absolute", "energy_db", "energy_std", "flatness",
                 "centroid_khz", "onset_rate", "pause_fraction")
_WINDOW = 400        # 25 ms analysis window
_SILENCE_DB = 35.0   # frames this far below the loudest frame are pauses
_TAIL_S = 0.08       # final rise: the last 80 ms of voicing (a question's rise is that short)


@dataclass(frozen=True)
class FrameFeatures:
    """Frame-level features of one utterance on the F0 grid (``hop_s`` apart)."""

    logf0: np.ndarray      # (T,) log-F0 minus ``offset``; NaN where unvoiced
    offset: float          # the utterance's mean log-F0 (log 150 Hz when nothing is voiced)
    energy_db: np.ndarray  # (T,)
    flatness: np.ndarray   # (T,) geometric / arithmetic mean of the power spectrum
    centroid: np.ndarray   # (T,) spectral centroid in kHz
    speech: np.ndarray     # (T,) bool: not a pause
    hop_s: float


def frame_features(samples: np.ndarray, f0: np.ndarray, hop_s: float) -> FrameFeatures:
    """Frame features of ``samples`` (16 kHz) with its F0 track ``f0`` (Hz, 0 = unvoiced)."""
    hop = int(round(hop_s * SAMPLE_RATE))
    n = f0.size
    padded = np.pad(samples.astype(np.float64), (_WINDOW // 2, _WINDOW))
    starts = np.arange(n) * hop + hop // 2  # window centred on the F0 frame centre
    frames = padded[starts[:, None] + np.arange(_WINDOW)[None, :]] * np.hanning(_WINDOW)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12          # (T, 201)
    freqs = np.fft.rfftfreq(_WINDOW, 1 / SAMPLE_RATE)
    energy_db = 10 * np.log10(power.mean(axis=1))
    flatness = np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)
    centroid = (power * freqs).sum(axis=1) / power.sum(axis=1) / 1000
    voiced = f0 > 0
    logf0 = np.where(voiced, np.log(np.where(voiced, f0, 1.0)), np.nan)
    offset = float(np.nanmean(logf0)) if voiced.any() else float(np.log(150.0))
    speech = energy_db > (energy_db.max() if n else 0.0) - _SILENCE_DB
    return FrameFeatures(logf0 - offset, offset, energy_db, flatness, centroid, speech, hop_s)


def pool(ff: FrameFeatures, start: int = 0, stop: int | None = None) -> np.ndarray:
    """(len(FEATURE_NAMES),) float64 features of frames ``start:stop``."""
    sl = slice(start, stop)
    logf0, speech = ff.logf0[sl], ff.speech[sl]
    voiced = ~np.isnan(logf0)
    seconds = max(logf0.size * ff.hop_s, ff.hop_s)
    v = logf0[voiced]
    if v.size >= 2:
        times = np.flatnonzero(voiced) * ff.hop_s
        slope = float(np.polyfit(times, v, 1)[0])
        tail = max(1, int(round(_TAIL_S / ff.hop_s)))  # the last syllable's pitch vs the rest
        rise = float(np.median(v[-tail:]) - np.median(v))
        level, spread = float(v.mean()), float(v.std())
        width = float(np.percentile(v, 90) - np.percentile(v, 10))
    else:
        slope = rise = spread = width = 0.0
        level = float(v.mean()) if v.size else 0.0
    onsets = np.count_nonzero(voiced[1:] & ~voiced[:-1]) + int(voiced[:1].sum())
    talk = speech if speech.any() else np.ones_like(speech)
    return np.array([voiced.mean() if voiced.size else 0.0, level, spread, width, slope, rise,
                     ff.offset + level, ff.energy_db[sl][talk].mean(), ff.energy_db[sl][talk].std(),
                     ff.flatness[sl][talk].mean(), ff.centroid[sl][talk].mean(),
                     onsets / seconds, 1.0 - speech.mean() if speech.size else 1.0])


def windows(n_frames: int, frames_per_window: int) -> list[tuple[int, int]]:
    """Consecutive windows; a last piece shorter than half a window joins the one before it."""
    bounds = list(range(0, n_frames, frames_per_window)) + [n_frames]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < frames_per_window / 2:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))
