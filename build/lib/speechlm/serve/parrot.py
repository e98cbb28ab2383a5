"""The parrot: a model-free session that repeats what it heard once the speaker pauses.

It is the sound check of the web page (hear your own microphone through the whole path) and the
no-model baseline of ``benchmarks/serve_latency.py`` (what the server, the protocol and the
network cost on their own). It goes through every state a real model shows: listening while you
speak, speaking while it repeats, interrupted when you talk over it, silent for noise alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechlm.serve.session import Output


@dataclass(frozen=True)
class ParrotFactory:
    """Sessions at ``sample_rate`` with frames of ``frame_ms``; see :class:`ParrotSession`."""

    sample_rate: int = 16_000
    frame_ms: int = 80
    speech_rms: float = 0.02     # a frame louder than this is speech (about -34 dBFS)
    end_of_turn_ms: int = 480    # this much quiet after speech ends the turn
    max_turn_s: float = 10.0     # longer turns keep only their last max_turn_s seconds
    name: str = "parrot"

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    def new_session(self) -> ParrotSession:
        return ParrotSession(self)

    def warmup(self) -> None:
        """Nothing to warm up."""


class ParrotSession:
    def __init__(self, factory: ParrotFactory) -> None:
        self.factory = factory
        self.reset()

    def reset(self) -> None:
        self.heard: list[np.ndarray] = []   # frames of the current user turn
        self.quiet_frames = 0               # quiet frames since the user last spoke
        self.reply = np.zeros(0, np.float32)  # what is left to say
        self.state = "listening"

    def push(self, frame: np.ndarray) -> Output:
        speech = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) > self.factory.speech_rms
        if self.state == "speaking":
            if not speech:
                return self._say()
            self.reply = np.zeros(0, np.float32)  # barge-in: stop at once and listen
            self.heard, self.quiet_frames, self.state = [frame], 0, "interrupted"
            return Output("interrupted", events=["interrupted"])
        if speech:
            self.heard.append(frame)
            self.quiet_frames = 0
            limit = int(self.factory.max_turn_s * 1000 / self.factory.frame_ms)
            del self.heard[:-limit]
            self.state = "listening"
            return Output("listening")
        if not self.heard:
            self.state = "silent"  # nothing addressed to us: stay silent
            return Output("silent")
        self.heard.append(frame)
        self.quiet_frames += 1
        if self.quiet_frames * self.factory.frame_ms >= self.factory.end_of_turn_ms:
            return self.end_turn()
        return Output("listening")

    def end_turn(self) -> Output:
        if not self.heard:
            return Output(self.state)
        speech = self.heard[:len(self.heard) - self.quiet_frames]  # without the trailing pause
        self.reply = np.concatenate(speech) if speech else np.zeros(0, np.float32)
        self.heard, self.quiet_frames = [], 0
        output = self._say()
        output.events.insert(0, "end_of_turn")
        return output

    def _say(self) -> Output:
        """One frame of the reply; back to listening when it is all said."""
        n = self.factory.frame_samples
        chunk, self.reply = self.reply[:n], self.reply[n:]
        if chunk.size == 0:
            self.state = "listening"
            return Output("listening", events=["end_of_reply"])
        self.state = "speaking"
        return Output("speaking", audio=chunk)
