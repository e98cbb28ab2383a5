"""Unit vocoders: discrete units (+ speaker) -> 16 kHz waveform.

>>> from speechlm.vocoder import load_vocoder, train_vocoder   # doctest: +SKIP
>>> wav = load_vocoder("runs/voc").synthesize(units, durations)  # doctest: +SKIP
"""

from speechlm.vocoder.unit_vocoder import UnitVocoder, load_vocoder, resynthesize, train_vocoder

__all__ = ["UnitVocoder", "load_vocoder", "resynthesize", "train_vocoder"]
