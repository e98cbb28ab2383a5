"""The F0-aware vocoder's extra input: log-F0 per unit frame, from audio (training) or from
generated prosody tokens (synthesis).

The unit vocoder (:mod:`speechlm.vocoder`) takes extra continuous per-frame streams by name
(``VocoderConfig.streams``); ``train_vocoder(cfg, streams={LOGF0: LogF0Stream()})`` trains one
conditioned on F0, so that generated intonation is heard. The value is absolute log-F0 (not
speaker-normalised: the vocoder has to produce the actual pitch), centred on 150 Hz (an octave
is 0.69); unvoiced frames carry the interpolated value, because at synthesis
time F0 comes from tokens that are defined for every unit and the units themselves say whether a
frame is voiced.

>>> np.round(logf0_feature(np.array([150.0, 0.0, 300.0])).ravel().astype(float), 2).tolist()
[0.0, 0.35, 0.69]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechlm.tokenizers.prosody.f0 import F0Config, extract_f0, interpolate_unvoiced, unit_f0

LOGF0 = "logf0"          # stream name in the vocoder's config
_CENTRE_HZ = 150.0


def logf0_feature(f0_hz: np.ndarray) -> np.ndarray:
    """(N,) Hz (0 = unvoiced) -> (N, 1) float32 ``log(F0 / 150 Hz)``, unvoiced interpolated
    (all zeros when nothing is voiced)."""
    f0_hz = np.asarray(f0_hz, dtype=np.float64)
    voiced = f0_hz > 0
    filled = interpolate_unvoiced(np.log(np.where(voiced, f0_hz, 1.0) / _CENTRE_HZ), voiced)
    values = np.zeros(f0_hz.size) if filled is None else filled
    return values[:, None].astype(np.float32)


@dataclass(frozen=True)
class LogF0Stream:
    """``FrameStream`` of :func:`speechlm.vocoder.train.train_vocoder`: the mean F0 of each unit
    frame of the audio (Praat, :func:`extract_f0`) as :func:`logf0_feature`."""

    config: F0Config = F0Config()
    dim: int = 1

    def __call__(self, samples: np.ndarray, n_frames: int, frame_rate: float) -> np.ndarray:
        f0 = extract_f0(samples, self.config)
        return logf0_feature(unit_f0(f0, self.config.hop_s, np.ones(n_frames, np.int64), frame_rate))
