"""Streaming vocoding: units in small chunks, audio out as it settles.

Which stages are causal (what a stream has to wait for):

* the speech tokenizer: not causal; :class:`~speechlm.tokenizers.streaming.StreamingTokenizer`
  fixes each frame's unit a set number of frames later;
* the LM: causal, with its KV cache kept between calls (:class:`~speechlm.generation.sampling.Decoder`);
* the unit vocoder: convolutions over units and frames in both directions (not causal), so
  :class:`StreamingVocoder` vocodes each chunk with ``context`` units before it and emits it once
  ``lookahead`` units after it are known (or the response ended).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from speechlm.data.audio import SAMPLE_RATE


class StreamingVocoder:
    """Units in, 16 kHz audio out: each unit's audio once ``lookahead`` later units are known.

    Deduplicated units last their mean duration; ``unit_frames=1`` is for frame-level units (one
    unit per 20 ms frame, as duplex models speak)."""

    def __init__(self, vocoder: Any, context: int = 8, lookahead: int = 4,
                 unit_frames: int | None = None) -> None:
        self.vocoder = vocoder
        self.context, self.lookahead, self.unit_frames = context, lookahead, unit_frames
        self.samples_per_frame = int(round(SAMPLE_RATE / 50))          # the vocoder's 50 Hz grid
        self.reset()

    def reset(self) -> None:
        self.units: list[int] = []
        self.done = 0  # units whose audio was emitted

    def push(self, units: list[int]) -> np.ndarray:
        self.extend(units)
        return self._emit(len(self.units) - self.lookahead)

    def extend(self, units: list[int]) -> None:
        """Add units without vocoding (:meth:`push` with no units vocodes what is ready)."""
        self.units.extend(int(u) for u in units)

    def ready_samples(self) -> int:
        """Samples :meth:`push` would emit now: units with ``lookahead`` units after them, each
        lasting its duration (known before vocoding, so a caller can vocode once per need)."""
        window = np.asarray(self.units[self.done: max(self.done, len(self.units) - self.lookahead)],
                            dtype=np.int64)
        frames = self._durations(window).sum() if window.size else 0
        return int(frames) * self.samples_per_frame

    def _durations(self, units: np.ndarray) -> np.ndarray:
        """Frames per unit: the vocoder's mean durations, or ``unit_frames`` each."""
        return self.vocoder.mean_durations.numpy()[units] if self.unit_frames is None \
            else np.full(units.size, self.unit_frames)

    def flush(self) -> np.ndarray:
        return self._emit(len(self.units))

    def _emit(self, upto: int) -> np.ndarray:
        if upto <= self.done:
            return np.zeros(0, dtype=np.float32)
        start = max(0, self.done - self.context)
        window = np.asarray(self.units[start:], dtype=np.int64)      # context + new + look-ahead
        durations = self._durations(window)                          # frames per unit
        bounds = np.concatenate([[0], np.cumsum(durations)]) * self.samples_per_frame
        audio = np.asarray(self.vocoder.synthesize(window, durations), dtype=np.float32)
        out = audio[bounds[self.done - start]: bounds[upto - start]]
        self.done = upto
        return out
