"""Serve a trained speech LM: the core's streaming :class:`~speechlm.generation.session.Session`
behind the server's :class:`~speechlm.serve.session.SessionFactory` interface.

The model directory brings its speech tokenizer (the one it records, or ``tokenizer_dir``); the
vocoder is given explicitly (``speechlm serve --vocoder DIR``), since a model directory records
no vocoder. Added on top of the core session, for people at a microphone and for many sessions
per worker:

* **end of turn after a pause**: a turn-based continuation model answers only after
  ``end_turn``; the adapter calls it once the user has been quiet for ``end_of_turn_ms`` after
  speaking (0 = only the client's ``end_turn`` control);
* **the reply starts at once**: after ``end_turn`` the response is generated in the same call
  until one frame of its audio is ready, so that audio goes out with the acknowledgement instead
  of waiting for the next input frame, and the client holds a frame of audio in hand;
* **heard units reach the LM in a few calls, between frames**: once ``feed_chunk`` (64) wait
  and the rest when the turn ends, not in one
  forward per tokenizer call: a decoding call of a small LM is mostly per-call overhead, and the
  causal LM builds the same KV cache either way. The reply starts from the same context;
* **no bursts while speaking**: every frame generates only the units its audio needs,
  ``response_chunk`` (2) at a time, and vocodes them in one call (the core session's
  :meth:`~speechlm.generation.session.Session.speak`). The core's default of 10 units per
  step made some frames carry ten LM steps and a vocoder call (60-100 ms of CPU for one frame,
  longer than the frame) and the frames between carry none. The units drawn are the same (one
  sample per unit from the same seeded generator); the vocoder still sees ``vocoder_context``
  units before and ``vocoder_lookahead`` after every unit it renders;
* **calls in slices, work done ahead** (:class:`~speechlm.serve.session.SlicedSession`): a
  worker process runs other sessions' calls between the slices of this one (the turn-ending
  frame: the tokenizer's flush, the prefill, each chunk of the reply's first units, the vocoder
  call) and sends the reply as soon as it is complete; then, before the session's next
  frame, it generates that frame's units (:meth:`~speechlm.generation.session.Session.prepare_push`)
  or feeds the heard ids. A speaking frame's call then only vocodes. The work is the same and
  always done, in the same order for a session, so the units and the audio do not depend on
  timing; ``push`` and ``end_turn`` called directly do all of it in one go.

Silence the core session returns while it has nothing to say is not sent (it would cost 256
kbit/s per idle session); the ``interrupted`` event is reported as the frame's state so clients
stop playback at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechlm.core.errors import ConfigError
from speechlm.generation.pipeline import Sampling, SpeechPipeline
from speechlm.generation.session import Session, StepOutput
from speechlm.serve.session import Output, run_slices


@dataclass
class SpeechLMFactory:
    """One loaded model (weights shared by every session) and how its sessions behave."""

    pipeline: SpeechPipeline
    sampling: Sampling
    seed: int = 0
    frame_ms: int = 80
    end_of_turn_ms: int = 640
    name: str = "speechlm"
    sample_rate: int = Session.sample_rate
    listen_chunk_ms: int = 400
    response_chunk: int = 2
    feed_chunk: int = 64  # heard ids fed to the LM between calls once this many wait

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    @property
    def tokenizer_chunk(self) -> int:
        """Unit frames the streaming tokenizer fixes per call while listening.

        Each call re-encodes its left context (50 frames) with the new frames, so a larger chunk
        costs less CPU per frame: 400 ms takes 20 frames per call (74 encoded, 3.7x the new ones)
        where the core session's default of 5 took 8 at a time (58 encoded, 7x). Heard units are
        reported up to one chunk later; the LM gets them in ``feed_chunk`` batches anyway, and the
        reply does not wait for them, since ``end_turn`` fixes the rest at once.
        """
        return max(1, round(self.listen_chunk_ms * self.pipeline.tokenizer.frame_rate / 1000))

    def new_session(self) -> ServedSession:
        return ServedSession(Session(self.pipeline, self.sampling, seed=self.seed,
                                     response_chunk=self.response_chunk,
                                     tokenizer_chunk=self.tokenizer_chunk,
                                     feed_chunk=None), self)  # fed between calls

    def warmup(self) -> None:
        """Hear a second of noise, answer it, reset: lazy initialisation is paid before serving."""
        session = self.new_session()
        rng = np.random.default_rng(0)
        noise = (0.1 * rng.standard_normal(self.sample_rate)).astype(np.float32)
        for start in range(0, noise.size, self.frame_samples):
            session.push(noise[start:start + self.frame_samples])
        session.end_turn()
        session.push(np.zeros(self.frame_samples, np.float32))
        session.reset()


def load_model_factory(model_dir: str | Path, vocoder_dir: str | Path,
                       tokenizer_dir: str | Path | None = None,
                       sampling: Sampling | None = None, seed: int = 0, frame_ms: int = 80,
                       end_of_turn_ms: int = 640, listen_chunk_ms: int = 400,
                       response_chunk: int = 2) -> SpeechLMFactory:
    """Load ``model_dir`` with its tokenizer and the vocoder at ``vocoder_dir`` (units checked)."""
    if frame_ms < 10 or end_of_turn_ms < 0 or listen_chunk_ms < 20 or response_chunk < 1:
        raise ConfigError(f"frame_ms={frame_ms} must be >= 10, end_of_turn_ms="
                          f"{end_of_turn_ms} >= 0, listen_chunk_ms={listen_chunk_ms} >= 20 and "
                          f"response_chunk={response_chunk} >= 1")
    pipeline = SpeechPipeline.load(model_dir, tokenizer_dir=None if tokenizer_dir is None else
                                   str(tokenizer_dir), vocoder_dir=str(vocoder_dir),
                                   need_tokenizer=True)
    return SpeechLMFactory(pipeline, sampling or Sampling(150, 0.8, 50), seed, frame_ms,
                           end_of_turn_ms, name=Path(model_dir).resolve().name,
                           listen_chunk_ms=listen_chunk_ms, response_chunk=response_chunk)


class ServedSession:
    """A core :class:`Session` seen through the server's ``push / end_turn / reset``, in slices
    (:class:`~speechlm.serve.session.SlicedSession`; see the module docstring)."""

    def __init__(self, session: Session, factory: SpeechLMFactory) -> None:
        self.session, self.factory = session, factory
        self.quiet_ms = 0  # quiet since the user last spoke (while listening)
        self.held: Output | None = None  # what work done ahead produced: sent with the next reply

    def push(self, frame: np.ndarray) -> Output:
        return run_slices(self.slices("push", frame))

    def end_turn(self) -> Output:
        """End the turn and generate until a frame of the reply's audio is ready (or it ended)."""
        return run_slices(self.slices("end_turn"))

    def reset(self) -> None:
        self.session.reset()
        self.quiet_ms = 0
        self.held = None

    def slices(self, op: str, *args: np.ndarray) -> Iterator[Output | None]:
        if op == "push":
            return self._push(*args)
        if op == "end_turn":
            return self._end_turn()
        raise ValueError(f"{op!r} is not a sliced call (push, end_turn)")

    def _push(self, frame: np.ndarray) -> Iterator[Output | None]:
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) if frame.size else 0.0
        speech = 20 * np.log10(rms + 1e-12) > self.session.speech_db
        eot = self.factory.end_of_turn_ms
        if self.session.state == "listening" and not speech and eot and \
                self.quiet_ms + self.factory.frame_ms >= eot:
            yield from self._end_turn(frame)  # this quiet frame ends the turn
            return
        output = self._convert(self._run(self.session.push, frame))
        listening = self.session.state == "listening"
        self.quiet_ms = self.quiet_ms + self.factory.frame_ms if listening and not speech else 0
        yield self._reply(output)
        yield from self._ahead()

    def _end_turn(self, frame: np.ndarray | None = None) -> Iterator[Output | None]:
        """End the turn in slices: the tokenizer's last call (``frame`` heard in it), the prefill
        of the heard ids still waiting, the units of the reply's first frame a chunk per slice,
        one vocoder call; the reply goes out with its first audio."""
        self.quiet_ms = 0
        output = self._convert(self._run(self.session.flush, frame))  # the tokenizer's last call
        yield None
        output = _merge(output, self._convert(self._run(self.session.end_turn)))  # the prefill
        if "end_of_turn" in output.events and self.session.state == "speaking":
            n = self.factory.frame_samples
            more = True
            while more:
                yield None
                more = self._run(self.session.prepare, n)
            output = _merge(output, self._convert(self._run(self.session.speak, n)))
        yield self._reply(output)
        yield from self._ahead()

    def _ahead(self) -> Iterator[None]:
        """Work for the next call, done before it arrives: while speaking, the units the next
        frame's audio needs (a chunk per slice); while listening, feeding the heard ids to the
        LM once ``feed_chunk`` wait."""
        session = self.session
        if session.state == "speaking":
            while self._run(session.prepare_push, self.factory.frame_samples):
                yield None
        elif session.state == "listening" and session.waiting >= self.factory.feed_chunk:
            fed = self._convert(self._run(session.feed_heard))
            if fed.events:  # a context reset: reported with the next reply
                self.held = fed if self.held is None else _merge(self.held, fed)

    def _reply(self, output: Output) -> Output:
        held, self.held = self.held, None
        return output if held is None else _merge(held, output)

    @staticmethod
    def _run(fn: Callable[..., Any], *args: Any) -> Any:
        """One slice; grad mode is per thread: the worker's must be off too."""
        with torch.inference_mode():
            return fn(*args)

    def _convert(self, out: StepOutput) -> Output:
        events = [e.type for e in out.events if e.type != "state"]
        audio = out.audio if np.any(out.audio) else np.zeros(0, np.float32)
        state = "interrupted" if "interrupted" in events else self.session.state
        return Output(state, np.asarray(audio, np.float32), out.text, list(out.tokens), events)


def _merge(first: Output, second: Output) -> Output:
    """Two outputs of one call, in order (the later state wins unless the first interrupted)."""
    return Output("interrupted" if first.state == "interrupted" else second.state,
                  np.concatenate([first.audio, second.audio]), first.text + second.text,
                  first.tokens + second.tokens, first.events + second.events)
