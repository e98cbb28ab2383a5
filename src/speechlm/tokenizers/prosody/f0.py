"""F0 tracks (Praat through praat-parselmouth), their alignment to unit frames, and speaker
normalisation of log-F0.

Why Praat's autocorrelation pitch (``Sound.to_pitch_ac``) rather than pyworld: in
``benchmarks/prosody_rtf.py`` (synthetic harmonic signals with a known F0 contour, and held-out
corpus speech) it had the lowest error (median 0.2 cents vs 5.5 for DIO+StoneMask and 5.4 for
Harvest), no gross errors, DIO's voicing accuracy (Harvest gets 11% of frames wrong), and the
lowest CPU cost (RTF 0.006 vs 0.008 for DIO and 0.31 for Harvest); it also installs as a binary
wheel, while pyworld compiles C code and needs ``setuptools<81``.

Frame grid: F0 frame ``j`` is centred at ``(j + 0.5) * hop_s`` seconds, like the unit frames of
:mod:`speechlm.tokenizers.semantic.dsp`; a unit frame of a tokenizer at ``frame_rate`` Hz holds
the F0 frames whose centres fall inside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.data.audio import SAMPLE_RATE
from speechlm.tokenizers.semantic.dsp import check_clip


@dataclass(frozen=True)
class F0Config:
    """Pitch search range and analysis step (Praat's defaults except a wider ceiling: espeak's
    excited female voices go above 500 Hz)."""

    floor: float = 60.0        # Hz; Praat's window is 3 / floor seconds long
    ceiling: float = 650.0     # Hz
    hop_s: float = 0.01        # seconds between F0 frames
    voicing_threshold: float = 0.45

    def __post_init__(self) -> None:
        if not 0 < self.floor < self.ceiling or not 0 < self.hop_s <= 0.05:
            raise ConfigError(f"F0 config: need 0 < floor < ceiling and 0 < hop_s <= 0.05, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


def extract_f0(samples: np.ndarray, config: F0Config = F0Config()) -> np.ndarray:
    """16 kHz mono samples -> ``(len(samples) // hop,)`` float64 F0 in Hz; 0 marks unvoiced frames.

    A clip shorter than Praat's analysis window (3 / floor seconds) has no measurable pitch and
    comes back all unvoiced.
    """
    import parselmouth

    samples = check_clip(samples)
    hop = int(round(config.hop_s * SAMPLE_RATE))
    n = samples.size // hop
    if samples.size < 3.0 / config.floor * SAMPLE_RATE + hop:
        return np.zeros(n)
    pitch = parselmouth.Sound(samples.astype(np.float64), SAMPLE_RATE).to_pitch_ac(
        time_step=config.hop_s, pitch_floor=config.floor, pitch_ceiling=config.ceiling,
        voicing_threshold=config.voicing_threshold)
    values = pitch.selected_array["frequency"]
    times = (np.arange(n) + 0.5) * hop / SAMPLE_RATE
    index = np.round((times - pitch.xs()[0]) / config.hop_s).astype(np.int64)
    inside = (index >= 0) & (index < values.size)
    out = np.zeros(n)
    out[inside] = values[index[inside]]
    return out


def unit_f0(f0: np.ndarray, hop_s: float, durations: np.ndarray, frame_rate: float) -> np.ndarray:
    """Mean F0 (Hz) of the voiced frames of each unit; 0 where a unit has no voiced frame (pGSLM).

    ``durations`` are the units' lengths in frames at ``frame_rate`` (``np.ones(n)`` gives the
    mean F0 of each frame of the unit grid).

    >>> unit_f0(np.array([100., 0., 120., 140.]), 0.01, np.array([1, 1]), 50.0)
    array([100., 130.])
    """
    durations = np.asarray(durations, dtype=np.int64)
    frame_of = np.floor((np.arange(f0.size) + 0.5) * hop_s * frame_rate).astype(np.int64)
    unit_of = np.searchsorted(np.cumsum(durations), frame_of, side="right")
    keep = (f0 > 0) & (unit_of < durations.size)
    sums = np.bincount(unit_of[keep], f0[keep], minlength=durations.size)
    counts = np.bincount(unit_of[keep], minlength=durations.size)
    return np.divide(sums, counts, out=np.zeros(durations.size), where=counts > 0)


def interpolate_unvoiced(values: np.ndarray, voiced: np.ndarray) -> np.ndarray | None:
    """Linear interpolation over unvoiced positions (held flat at the ends); None if none is voiced.

    >>> interpolate_unvoiced(np.array([1., 0., 3., 0.]), np.array([True, False, True, False]))
    array([1., 2., 3., 3.])
    """
    if not voiced.any():
        return None
    positions = np.arange(values.size)
    return np.interp(positions, positions[voiced], values[voiced])


def cents(estimate_hz: np.ndarray, reference_hz: np.ndarray) -> np.ndarray:
    """Absolute pitch difference in cents (1200 per octave)."""
    return np.abs(1200.0 * np.log2(np.asarray(estimate_hz) / np.asarray(reference_hz)))


@dataclass(frozen=True)
class SpeakerNorm:
    """Mean log-F0 per training speaker; unseen speakers fall back to the utterance's own mean.

    pGSLM subtracts the speaker's mean log-F0 so that F0 tokens carry intonation, not voice.
    """

    speakers: dict[str, float]
    global_mean: float  # for an unseen speaker whose utterance has no voiced frame at all

    @classmethod
    def fit(cls, tracks: list[tuple[str, np.ndarray]]) -> SpeakerNorm:
        """From ``(speaker, frame F0 in Hz)`` pairs; means over voiced frames."""
        per_speaker: dict[str, list[np.ndarray]] = {}
        for speaker, f0 in tracks:
            per_speaker.setdefault(speaker, []).append(np.log(f0[f0 > 0]))
        speakers = {s: float(np.concatenate(v).mean()) for s, v in per_speaker.items()
                    if sum(x.size for x in v)}
        voiced = np.concatenate([np.log(f0[f0 > 0]) for _, f0 in tracks])
        return cls(speakers, float(voiced.mean()) if voiced.size else float(np.log(150.0)))

    def offset(self, speaker: str | None, f0: np.ndarray) -> float:
        """The mean log-F0 to subtract for ``speaker``'s utterance with frame F0 ``f0``."""
        if speaker in self.speakers:
            return self.speakers[speaker]
        voiced = f0[f0 > 0]
        return float(np.log(voiced).mean()) if voiced.size else self.global_mean

    def to_dict(self) -> dict:
        return {"global_mean_logf0": self.global_mean, "speakers": self.speakers}

    @classmethod
    def from_dict(cls, data: dict) -> SpeakerNorm:
        return cls({str(k): float(v) for k, v in data["speakers"].items()},
                   float(data["global_mean_logf0"]))
