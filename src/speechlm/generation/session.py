"""A streaming conversation with a speech LM: audio frames in, audio/units/events out.

One :class:`Session` per user (per connection of a server). It keeps the LM's KV cache, the
streaming tokenizer and vocoder and the turn state between calls::

    session = Session(SpeechPipeline.load(model_dir, vocoder_dir=voc, need_tokenizer=True))
    for chunk in microphone:                 # any size; session.frame_samples = one unit frame
        out = session.push(chunk)            # listening: units in; speaking: response audio out
        play(out.audio); show(out.events)
    session.end_turn()                       # the user finished: respond
    while session.state == "speaking":
        play(session.step().audio)           # the continuation, one chunk of units at a time
    # or session.speak(n): as many units as n samples of audio need, vocoded in one call;
    # session.prepare_push(n) between calls generates the next push's units ahead (a server's
    # spare time), so that push only vocodes

States, each change reported as an :class:`Event`: ``silent`` (nothing heard, nothing to say),
``listening`` (the user speaks; audio is tokenized with a look-ahead and fed to the LM as it
arrives), ``speaking`` (after :meth:`end_turn`: the LM continues and the vocoded audio streams
out), ``interrupted`` (the user spoke while the session was speaking: the response stops at
once and the new audio starts the next turn). Speech is detected by chunk energy
(``speech_db``, dBFS). For today's continuation LMs a response continues the user's utterance;
each later turn starts a new utterance (``<eos>`` ``<bos>``) in the same context. When the context
would overflow, the last half of the history is kept (event ``context_reset``).

A duplex model (``duplex-tiny``, ``dgslm-tiny``; :mod:`speechlm.lm.duplex`) has no turns: every
``push`` runs it frame by frame (:class:`~speechlm.generation.duplex.DuplexEngine`), listening while
it speaks, and the states follow what it decides (``end_turn`` and ``step`` do nothing).

Which stages are causal and what streaming costs in unit accuracy:
:mod:`speechlm.tokenizers.streaming` and :mod:`speechlm.generation.streaming`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechlm.core.errors import ConfigError
from speechlm.data.audio import SAMPLE_RATE, check_audio
from speechlm.generation.pipeline import Sampling, SpeechPipeline
from speechlm.generation.sampling import Decoder, NextStep, check_sampling, sample
from speechlm.generation.streaming import StreamingVocoder
from speechlm.lm.duplex import is_duplex
from speechlm.tokenizers.streaming import StreamingTokenizer

STATES = ("silent", "listening", "speaking", "interrupted")


@dataclass
class Event:
    type: str                     # state | end_of_turn | end_of_response | interrupted | context_reset
    state: str                    # the session's state after the event
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    tokens: list[int] = field(default_factory=list)   # units heard (listening) or said (speaking)
    text: str = ""                                     # text output (none for unit LMs)
    events: list[Event] = field(default_factory=list)


class Session:
    """See the module docstring. ``pipeline`` is a loaded :class:`SpeechPipeline` or a model dir."""

    def __init__(self, pipeline: SpeechPipeline | str | Path, sampling: Sampling | None = None,
                 seed: int = 0, response_chunk: int = 10, tokenizer_lookahead: int = 4,
                 tokenizer_context: int = 50, vocoder_context: int = 8, vocoder_lookahead: int = 4,
                 speech_db: float = -40.0, tokenizer_chunk: int = 5,
                 feed_chunk: int | None = 1, yield_threshold: float | None = None) -> None:
        """``yield_threshold``: duplex models only (None: the engine's default)."""
        if not isinstance(pipeline, SpeechPipeline):
            pipeline = SpeechPipeline.load(pipeline, need_tokenizer=True)
        lm = pipeline.lm
        self.duplex = None
        if is_duplex(lm):
            from speechlm.generation.duplex import DuplexEngine

            self.duplex = DuplexEngine(pipeline, sampling or Sampling(0, 0.8, 20), seed,
                                       vocoder_context=vocoder_context,
                                       vocoder_lookahead=vocoder_lookahead,
                                       yield_threshold=yield_threshold)
        elif lm.kind != "speech" or lm.space.n_rows != 1:
            raise ConfigError(f"{lm.path}: a Session needs a one-stream speech LM (this one is "
                              f"{lm.kind} with {lm.space.n_rows} model rows)")
        self.pipeline, self.lm = pipeline, lm
        self.sampling = sampling or Sampling(150, 0.8, 50)
        if self.duplex is None:
            check_sampling(self.sampling.temperature, self.sampling.max_new_tokens, self.sampling.top_p)
        self.seed, self.response_chunk, self.speech_db = seed, response_chunk, speech_db
        # heard ids go to the LM once feed_chunk of them wait (and at end_turn): the LM is causal,
        # so a few larger calls build the same KV cache as many small ones, for a fraction of the
        # per-call overhead that dominates a small model's forward; 1 = as they arrive; None =
        # when the caller says (feed_heard, e.g. between a server's calls) or the turn ends
        self.feed_chunk = feed_chunk
        self.listener = StreamingTokenizer(pipeline.tokenizer, tokenizer_lookahead, tokenizer_context,
                                           tokenizer_chunk) if pipeline.tokenizer is not None else None
        self.speaker = StreamingVocoder(pipeline.vocoder, vocoder_context, vocoder_lookahead) \
            if pipeline.vocoder is not None else None
        self.decoder = Decoder(lm.model)
        self.reset()

    sample_rate = SAMPLE_RATE
    frame_samples = 320  # one unit frame (20 ms at 50 Hz)

    def reset(self, seed: int | None = None) -> None:
        """Forget the conversation: empty context, state ``silent``. ``seed`` replaces the
        session's sampling seed (a benchmark gives each conversation its own: with one seed,
        conversations that start alike draw the same samples and fail alike)."""
        if seed is not None:
            self.seed = seed
        self.decoder.reset()
        self.history: list[int] = []          # every id fed to the LM, for context resets
        self.state = "silent"
        self.turns = 0
        self.next: NextStep | None = None
        self.pending_start: list[int] = []    # ids that open the current turn, fed with its first units
        self.unfed: list[int] = []            # heard ids not yet fed to the LM (feed_chunk)
        self.pending_audio = np.zeros(0, dtype=np.float32)
        self._reset_streams()
        if self.duplex is not None:
            self.duplex.reset(seed)

    def _reset_streams(self) -> None:
        self.said = 0
        self.ended = False
        self._drop_ahead()
        self.generator: torch.Generator | None = None
        if self.listener is not None:
            self.listener.reset()
        if self.speaker is not None:
            self.speaker.reset()

    # ---------------------------------------------------------------- listening

    def push(self, audio: np.ndarray) -> StepOutput:
        """Audio from the user; returns as many samples of output audio (silence when there is
        nothing to say). Listening: the audio is tokenized and fed to the LM. Speaking: user speech
        interrupts; otherwise the response continues."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return StepOutput()
        check_audio(audio, f"session chunk (turn {self.turns})")  # NaN/Inf: AudioError
        if self.duplex is not None:
            samples, said, text, changes = self.duplex.push(audio)
            return StepOutput(samples, said, text, self._duplex_events(changes))
        speech = 20 * np.log10(np.sqrt(np.mean(audio ** 2)) + 1e-12) > self.speech_db
        if self._saying() and not speech:
            return self._take(audio.size)
        out = self.interrupt()
        out.audio = np.zeros(audio.size, dtype=np.float32)
        if self.state != "listening":
            if not speech:
                return out
            out.events += self._start_turn()
        if self.listener is None:
            raise ConfigError(f"{self.lm.path}: no speech tokenizer loaded to hear audio; load the "
                              "pipeline with need_tokenizer=True or use push_units")
        self._feed_units(self.listener.push(audio), out)
        return out

    def push_units(self, units: list[int]) -> StepOutput:
        """Units heard (instead of audio): fed to the LM as one chunk (a duplex model: one unit
        per frame, one step each)."""
        if self.duplex is not None:
            said, text, changes = self.duplex.push_units([int(u) for u in units])
            return StepOutput(tokens=said, text=text, events=self._duplex_events(changes))
        out = self.interrupt()
        if self.state != "listening":
            out.events += self._start_turn()
        self._feed_units([int(u) for u in units], out)
        return out

    def end_turn(self, audio: np.ndarray | None = None) -> StepOutput:
        """The user finished: fix the remaining audio, then respond (state ``speaking``).

        ``audio``: the turn's last chunk, heard first (``push`` then ``end_turn`` in one call, with
        one tokenizer call instead of up to two while listening; otherwise just ``push``)."""
        if audio is not None and (self.state != "listening" or self.duplex is not None or
                                  self.listener is None):
            return self.push(audio)  # not listening: end_turn alone would do nothing
        if self.state != "listening" or self.duplex is not None:
            return StepOutput()
        out = self.flush(audio)
        self._feed_heard(out)
        if self.next is None:  # nothing heard: the response starts from the turn's start
            self.next = self._feed(self.pending_start, out)
            self.pending_start = []
        self.generator = torch.Generator(device=self.decoder.device).manual_seed(self.seed + self.turns - 1)
        self.state = "speaking"
        out.events += [Event("end_of_turn", self.state, {"turn": self.turns}),
                       Event("state", self.state)]
        return out

    def flush(self, audio: np.ndarray | None = None) -> StepOutput:
        """The first half of :meth:`end_turn`: the turn's remaining audio (after ``audio``) fixed
        in the tokenizer's last call, its units queued for the LM (``feed_chunk`` allowing),
        the turn not ended yet; :meth:`end_turn` right after it does the rest (a server runs
        the two as separate slices)."""
        out = StepOutput()
        if self.state != "listening" or self.duplex is not None or self.listener is None:
            return out
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)
            if audio.size:
                check_audio(audio, f"session chunk (turn {self.turns})")  # NaN/Inf: AudioError
        self._feed_units(self.listener.flush(audio), out)
        return out

    # ---------------------------------------------------------------- speaking

    def step(self) -> StepOutput:
        """The next ``response_chunk`` units of the response and the audio that is ready."""
        out = StepOutput()
        if self.state != "speaking" or self.duplex is not None:
            return out
        self._generate(self.response_chunk, out)
        return self._vocode(out)

    def speak(self, samples: int) -> StepOutput:
        """Units of the response, ``response_chunk`` at a time, until ``samples`` of its audio can
        be vocoded (or it ends), then one vocoder call: what ``samples`` of playback need, no
        more, so a stream of calls (a frame each) spreads the response's work evenly. Without a
        vocoder: one chunk, like :meth:`step`. Units :meth:`prepare` generated ahead for these
        ``samples`` are not generated again."""
        if self.state != "speaking" or self.duplex is not None:
            return StepOutput()
        while self.prepare(samples):
            pass
        out, self.ahead = self.ahead or StepOutput(), None
        self.ahead_chunks = 0
        return self._vocode(out)

    def prepare(self, samples: int) -> bool:
        """One chunk of the units the next :meth:`speak` of ``samples`` needs, generated now (the
        same units, drawn in the same order; reported by that call); True while it needs more.
        A caller with spare time between calls spreads a response's work with it."""
        if self.state != "speaking" or self.duplex is not None or self._prepared(samples):
            return False
        if self.ahead is None:
            self.ahead = StepOutput()
        self._generate(self.response_chunk, self.ahead)
        self.ahead_chunks += 1
        return not self._prepared(samples)

    def prepare_push(self, samples: int) -> bool:
        """:meth:`prepare` for the next :meth:`push` of ``samples`` quiet samples while speaking
        (what that push will ask :meth:`speak` for); True while it needs more."""
        need = samples - self.pending_audio.size
        return self.state == "speaking" and need > 0 and self.prepare(need)

    def _prepared(self, samples: int) -> bool:
        """:meth:`speak`'s stop rule: at least one chunk, then until ``samples`` are ready."""
        return self.ahead_chunks > 0 and (self._response_done() or self.speaker is None or
                                          self.speaker.ready_samples() >= samples)

    def _drop_ahead(self) -> None:
        self.ahead: StepOutput | None = None  # units prepared for the next speak()
        self.ahead_chunks = 0

    def _response_done(self) -> bool:
        return self.ended or self.said >= self.sampling.max_new_tokens

    def _generate(self, n: int, out: StepOutput) -> bool:
        """Sample up to ``n`` more units into ``out`` (and the vocoder); False once it ended."""
        s, eos = self.sampling, self.lm.vocab.eos_id
        units = []
        for _ in range(n if s.max_new_tokens else 0):
            token = sample(self.next.row(0), s.temperature, s.top_k, s.top_p, self.generator)
            self.said += 1
            self.ended = s.stop_at_eos and token == eos
            if not self.ended:
                units += self.lm.decode_units([token])
            if self._response_done():
                break
            self.next = self._feed([token], out)
        out.tokens += units
        if self.speaker is not None:
            self.speaker.extend(units)
        return not self._response_done()

    def _vocode(self, out: StepOutput) -> StepOutput:
        """The audio that is ready; at the end of the response, the rest and state ``silent``."""
        if self.speaker is not None:
            out.audio = self.speaker.push([])
        if self._response_done():
            if self.speaker is not None:
                out.audio = np.concatenate([out.audio, self.speaker.flush()])
            self.state = "silent"
            out.events += [Event("end_of_response", self.state, {"units": self.said, "eos": self.ended}),
                           Event("state", self.state)]
        return out

    def _saying(self) -> bool:
        """Still speaking, or response audio not yet played out."""
        return self.state == "speaking" or self.pending_audio.size > 0

    def interrupt(self) -> StepOutput:
        """Stop the response now (the user spoke); response audio not yet played is dropped."""
        if self.duplex is not None:
            self.duplex.interrupt()
            return StepOutput()
        if not self._saying():
            return StepOutput()
        self.state = "interrupted"
        dropped = self.pending_audio.size
        self.pending_audio = np.zeros(0, dtype=np.float32)
        self._drop_ahead()
        return StepOutput(events=[Event("interrupted", self.state,
                                        {"units_said": self.said, "audio_dropped": int(dropped)})])

    def _take(self, n: int) -> StepOutput:
        """``n`` samples of response audio, generating chunks as needed (zeros once it ended)."""
        out = StepOutput()
        while self.pending_audio.size < n and self.state == "speaking":
            chunk = self.speak(n - self.pending_audio.size)
            out.tokens += chunk.tokens
            out.events += chunk.events
            self.pending_audio = np.concatenate([self.pending_audio, chunk.audio])
        audio = self.pending_audio[:n]
        self.pending_audio = self.pending_audio[n:]
        out.audio = np.concatenate([audio, np.zeros(n - audio.size, dtype=np.float32)])
        return out

    def _duplex_events(self, changes: list[tuple[str, dict]]) -> list[Event]:
        """The duplex engine's state changes as events (the session's state follows it)."""
        for state, _ in changes:
            self.state = state
        return [Event("state", state, detail) for state, detail in changes]

    # ---------------------------------------------------------------- the LM context

    def _turn_start(self) -> list[int]:
        """``<bos>`` for the first turn; ``[<eos>] <bos>`` after a response (a new utterance)."""
        vocab = self.lm.vocab
        ended = bool(self.history) and self.history[-1] == vocab.eos_id
        return ([] if not self.history or ended else [vocab.eos_id]) + [vocab.bos_id]

    def _start_turn(self) -> list[Event]:
        self._reset_streams()
        self.turns += 1
        self.next = None
        self.pending_start = self._turn_start()
        self.state = "listening"
        return [Event("state", self.state, {"turn": self.turns})]

    def _feed_units(self, units: list[int], out: StepOutput) -> None:
        """Queue heard units for the LM (after the turn's start ids, once) and report them."""
        if not units:
            return
        self.unfed += self.pending_start + self.lm.vocab.encode("units", units)
        self.pending_start = []
        if self.feed_chunk is not None and len(self.unfed) >= self.feed_chunk:
            self._feed_heard(out)
        out.tokens += units

    @property
    def waiting(self) -> int:
        """Heard ids not yet fed to the LM (see ``feed_chunk``)."""
        return len(self.unfed)

    def feed_heard(self) -> StepOutput:
        """Feed the heard ids waiting now (the reply then starts with less to feed)."""
        out = StepOutput()
        if self.state == "listening":
            self._feed_heard(out)
        return out

    def _feed_heard(self, out: StepOutput) -> None:
        """Feed the heard ids still waiting (see ``feed_chunk``)."""
        if self.unfed:
            self.next = self._feed(self.unfed, out)
            self.unfed = []

    def _feed(self, ids: list[int], out: StepOutput | None = None) -> NextStep:
        limit = self.decoder.limit
        if limit is not None and self.decoder.length + len(ids) > limit:
            keep = [self.lm.vocab.bos_id] + (self.history + ids)[-(limit // 2):]
            self.decoder.reset()
            self.history = []
            ids = keep
            if out is not None:
                out.events.append(Event("context_reset", self.state, {"kept": len(keep)}))
        self.history += ids
        return self.decoder.feed(ids)
