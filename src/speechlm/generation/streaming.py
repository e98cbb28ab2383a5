"""Streaming tokenization and vocoding: audio/units in small chunks, units/audio out as they settle.

Which stages are causal (what a stream has to wait for):

* feature extractors: ``mfcc``/``logmel`` look at a 25 ms window and ±2 frames for deltas;
  ``ssl-tiny`` and ``hf:`` encoders are **bidirectional** transformers (every frame sees the whole
  clip). None is causal, so :class:`StreamingTokenizer` fixes a frame's unit only once
  ``lookahead`` frames after it have arrived, computing it over a window that starts ``context``
  frames earlier. Units can then differ from offline tokenization of the whole clip; the unit edit
  rate is measured by ``benchmarks/streaming_units.py``;
* k-means assignment: per frame (causal);
* run-length deduplication: a unit is emitted when its run starts (causal, no delay);
* the LM: causal, with its KV cache kept between calls (:class:`~speechlm.generation.sampling.Decoder`);
* the unit vocoder: convolutions over units and frames in both directions (not causal), so
  :class:`StreamingVocoder` vocodes each chunk with ``context`` units before it and emits it once
  ``lookahead`` units after it are known (or the response ended).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from speechlm.data.audio import SAMPLE_RATE
from speechlm.tokenizers.semantic.dsp import MIN_SAMPLES


class StreamingTokenizer:
    """Incoming 16 kHz audio -> deduplicated units, ``lookahead`` frames behind the input."""

    def __init__(self, tokenizer: Any, lookahead: int = 4, context: int = 50, chunk: int = 5) -> None:
        self.tokenizer = tokenizer
        self.hop = int(round(SAMPLE_RATE / tokenizer.frame_rate))  # samples per frame
        self.lookahead, self.context, self.chunk = lookahead, context, chunk
        self.reset()

    def reset(self) -> None:
        self.audio = np.zeros(0, dtype=np.float32)  # samples from frame ``self.first`` on
        self.first = 0      # frame index of audio[0]
        self.done = 0       # frames whose unit is fixed
        self.last: int | None = None  # unit of the current run

    @property
    def frames(self) -> int:
        """Complete frames received so far."""
        return self.first + self.audio.size // self.hop

    def push(self, samples: np.ndarray) -> list[int]:
        """Add audio; returns the units whose runs started since the last call."""
        return self._runs(self.push_frames(samples))

    def flush(self, samples: np.ndarray | None = None) -> list[int]:
        """End of input (after ``samples``, if given): fix every remaining complete frame (no
        look-ahead left to wait for) in one encoder call."""
        if samples is not None:
            self._append(samples)
        return self._runs(self.flush_frames())

    def flush_frames(self) -> list[int]:
        """:meth:`flush` without deduplication: the unit of every remaining frame."""
        return self._fix(self.frames)

    def push_frames(self, samples: np.ndarray) -> list[int]:
        """Add audio; returns the unit of every frame fixed since the last call (no dedup)."""
        self._append(samples)
        ready = self.frames - self.lookahead
        return self._fix(ready) if ready - self.done >= self.chunk else []

    def _append(self, samples: np.ndarray) -> None:
        self.audio = np.concatenate([self.audio, np.asarray(samples, dtype=np.float32).reshape(-1)])

    def _fix(self, upto: int) -> list[int]:
        start = max(0, self.done - self.context)
        window = self.audio[(start - self.first) * self.hop:]
        window = window[: (window.size // self.hop) * self.hop]
        if upto <= self.done or window.size < MIN_SAMPLES:
            return []
        frame_units, _ = self.tokenizer.encode(window, dedup=False)   # one unit per frame
        new = [int(u) for u in frame_units[self.done - start: upto - start]]
        self.done = upto
        keep = max(0, self.done - self.context)                        # drop audio no longer needed
        self.audio = self.audio[(keep - self.first) * self.hop:]
        self.first = keep
        return new

    def _runs(self, frame_units: list[int]) -> list[int]:
        """Run-length deduplication across calls: a unit is emitted when its run starts."""
        started = []
        for unit in frame_units:
            if unit != self.last:
                started.append(unit)
                self.last = unit
        return started


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
