"""Streaming tokenization: audio in small chunks, units out as they settle.

Which stages are causal (what a stream has to wait for):

* feature extractors: ``mfcc``/``logmel`` look at a 25 ms window and ±2 frames for deltas;
  ``ssl-tiny`` and ``hf:`` encoders are **bidirectional** transformers (every frame sees the whole
  clip). None is causal, so :class:`StreamingTokenizer` fixes a frame's unit only once
  ``lookahead`` frames after it have arrived, computing it over a window that starts ``context``
  frames earlier. Units can then differ from offline tokenization of the whole clip; the unit edit
  rate is measured by ``benchmarks/streaming_units.py``;
* k-means assignment: per frame (causal);
* run-length deduplication: a unit is emitted when its run starts (causal, no delay).

The LM and the vocoder side of a stream: :mod:`speechlm.generation.streaming`.
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
