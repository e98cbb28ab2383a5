"""Unit vocoders: deduplicated units + durations (+ speaker, + extra per-frame streams) -> 16 kHz
waveform.

>>> from speechlm.vocoder import load_vocoder                                  # doctest: +SKIP
>>> wav = load_vocoder("runs/voc").synthesize(units, durations, speaker=None)  # doctest: +SKIP
"""

from speechlm.vocoder.train import FrameStream, VocoderTrainConfig, train_vocoder
from speechlm.vocoder.unit_vocoder import UnitVocoder, load_vocoder, resynthesize

__all__ = ["FrameStream", "UnitVocoder", "VocoderTrainConfig", "load_vocoder", "resynthesize",
           "train_vocoder"]
