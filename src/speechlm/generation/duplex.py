"""Frame-synchronous full-duplex decoding: one user frame in, one system frame out.

:class:`DuplexEngine` runs a duplex model (:mod:`speechlm.lm.duplex`) inside a
:class:`~speechlm.generation.session.Session`. Every 20 ms of user audio is tokenized with the
model's look-ahead (:class:`StreamingTokenizer`, one frame at a time), the user's unit is fed in
its row of the next layout step, and the system rows of that step are sampled: so at the end of
real frame ``t`` the system has decided frame ``t``. There are no turns: the model listens while
it speaks.

What is voiced: with a state stream, frames whose state is ``speak``; without one (dGSLM), frames
whose unit is not the silence unit. The state is decided before the units of its frame and gates
them: a frame whose state is not ``speak`` gets the silence unit (as in training, where the system
channel is silent in exactly those frames) and a ``speak`` frame any other unit. The state is a
decision and is taken greedily whatever the sampling of the other rows (sampled, a state run
flickers between speaking and not, and every flicker is a false start or a cut): the most probable
decision, with the states in which the user holds the floor pooled (:meth:`DuplexEngine._decide`). Voiced
units go to a frame-level :class:`StreamingVocoder` (audio ``vocoder_lookahead`` frames later).
When speech ends in a state where the user holds the floor (:data:`YIELD`: ``interrupted``,
LSLM's stop token, or ``query``) the audio not yet played is dropped, so the output is silent in
the same frame; any other end of speech lets the queued audio play out. Past the training block
length the context is cut to its most recent half (training blocks also start mid-dialogue).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from speechlm.core.errors import ConfigError
from speechlm.generation.sampling import Decoder, NextStep, _per_stream, check_sampling, sample
from speechlm.generation.streaming import StreamingVocoder
from speechlm.lm.duplex import STATE_STREAM, TEXT_STREAM, USER_STREAM, DuplexInfo
from speechlm.lm.sequences import sequence_frame
from speechlm.tokenizers.dialogue import CHARS, LISTEN_CONTEXT
from speechlm.tokenizers.streaming import StreamingTokenizer

SESSION_STATE = {"idle": "silent", "non_query": "silent", "query": "listening",
                 "speak": "speaking", "interrupted": "interrupted"}
YIELD = ("interrupted", "query")   # states in which the user holds the floor: stop at once
YIELD_THRESHOLD = 0.1              # stop speaking at this P(YIELD) (DuplexEngine._decide)


class DuplexEngine:
    """See the module docstring; ``sampling`` temperature/top-k may be per stream;
    ``yield_threshold``: see :meth:`_decide` (None: :data:`YIELD_THRESHOLD`)."""

    def __init__(self, pipeline: Any, sampling: Any, seed: int = 0,
                 tokenizer_context: int = LISTEN_CONTEXT,
                 vocoder_context: int = 8, vocoder_lookahead: int = 4,
                 yield_threshold: float | None = None) -> None:
        lm = pipeline.lm
        self.lm, self.space = lm, lm.space
        self.info = DuplexInfo.from_meta(lm.spec.extra, str(lm.path))
        self.streams = list(self.space.streams)
        self.delays = self.space.layout.delays
        self.user = self.streams.index(USER_STREAM)
        self.state_row = self.streams.index(STATE_STREAM) if self.info.has_state else None
        self.text_row = self.streams.index(TEXT_STREAM) if self.info.has_text else None
        # rows in the order they are decided: the state first (it gates the units)
        self.order = sorted(range(len(self.streams)), key=lambda r: r != self.state_row)
        n = len(self.streams)
        self.temps = _per_stream(sampling.temperature, n, "temperature")
        self.top_ks = _per_stream(sampling.top_k, n, "top_k")
        for t in self.temps:
            check_sampling(t, 1, sampling.top_p)
        self.yield_codes = [self.info.states.index(t) for t in YIELD if t in self.info.states]
        self.yield_threshold = YIELD_THRESHOLD if yield_threshold is None else yield_threshold
        if not 0.0 < self.yield_threshold <= 1.0:
            raise ConfigError(f"yield_threshold={yield_threshold}: use a probability in (0, 1]")
        self.top_p, self.seed = sampling.top_p, seed
        self.ranges = self.space.code_ranges()
        self.listener = StreamingTokenizer(pipeline.tokenizer, self.info.lookahead,
                                           tokenizer_context, chunk=1) \
            if pipeline.tokenizer is not None else None
        self.voice = StreamingVocoder(pipeline.vocoder, vocoder_context, vocoder_lookahead,
                                      unit_frames=1) if pipeline.vocoder is not None else None
        self.decoder = Decoder(lm.model)
        self.window = min(x for x in (lm.spec.seq_len, self.decoder.limit) if x)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """A new conversation (``seed``: its sampling seed, else the engine's)."""
        if seed is not None:
            self.seed = seed
        self.decoder.reset()
        self.generator = torch.Generator(device=self.decoder.device).manual_seed(self.seed)
        self.columns: list[np.ndarray] = []   # every step fed since reset, (R,) model ids each
        self.codes: list[dict[int, int]] = [{} for _ in self.streams]  # stream -> frame -> code
        self.step = 0                          # the next layout step to feed
        self.said = 0                          # system frames decided
        self.state = "silent"
        self.voiced = False
        self.pending = np.zeros(0, dtype=np.float32)
        if self.listener is not None:
            self.listener.reset()
        if self.voice is not None:
            self.voice.reset()
        before, _ = sequence_frame(self.space.vocab, end=False)
        self.next = self.decoder.feed(np.tile(np.asarray(before, dtype=np.int64),
                                              (self.space.n_rows, 1)))
        for _ in range(self.delays[self.user]):  # steps before the first user frame
            self._advance(None, [], [])

    # ---------------------------------------------------------------- input

    def push(self, audio: np.ndarray) -> tuple[np.ndarray, list[int], str, list[tuple[str, dict]]]:
        """User audio in; ``(audio out (same length), units said, text, state changes)``."""
        if self.listener is None:
            raise ConfigError(f"{self.lm.path}: no speech tokenizer loaded to hear audio; load the "
                              "pipeline with need_tokenizer=True or use push_units")
        said, text, events = self.push_units(self.listener.push_frames(audio))
        return self._take(audio.size), said, text, events

    def push_units(self, units: list[int]) -> tuple[list[int], str, list[tuple[str, dict]]]:
        """User units (one per frame) in: one model step each; the system frames decided."""
        said: list[int] = []
        letters: list[str] = []
        events: list[tuple[str, dict]] = []
        for unit in units:
            self._advance(int(unit), said, letters, events)
        return said, "".join(letters), events

    def interrupt(self) -> None:
        """Drop the audio not yet played (the caller's barge-in, outside the model)."""
        self.pending = np.zeros(0, dtype=np.float32)
        if self.voice is not None:
            self.voice.reset()

    # ---------------------------------------------------------------- one step

    def _advance(self, user_unit: int | None, said: list[int], letters: list[str],
                 events: list[tuple[str, dict]] | None = None) -> None:
        """Feed layout step ``self.step`` (user frame ``step - d_user``), sampling its system rows."""
        s = self.step
        column = np.full(self.space.n_rows, self.space.vocab.pad_id, dtype=np.int64)
        for row in self.order:
            frame = s - self.delays[row]
            if frame < 0:
                continue
            if row == self.user:
                column[row] = self.ranges[row][0] + user_unit
                continue
            lo, hi = self.ranges[row]
            logits = self.next.row(row, column).clone()
            logits[:, :lo] = float("-inf")
            logits[:, hi:] = float("-inf")
            if row == 0 and self._speaking(frame):   # a speaking frame says something
                logits[:, lo + self.info.silence_unit] = float("-inf")
            column[row] = lo + self._decide(logits[0, lo:hi]) if row == self.state_row else \
                sample(logits, self.temps[row], self.top_ks[row], self.top_p, self.generator)
            self.codes[row][frame] = int(column[row]) - lo
        system_frame = s - self.delays[0]
        if system_frame >= 0 and self.state_row is not None and not self._speaking(system_frame):
            self.codes[0][system_frame] = self.info.silence_unit   # the state gates the units
            column[0] = self.ranges[0][0] + self.info.silence_unit
        self._feed(column)
        if system_frame >= 0:
            self._say(system_frame, said, events if events is not None else [])
        if self.text_row is not None and s - self.delays[self.text_row] >= 0:
            code = self.codes[self.text_row].pop(s - self.delays[self.text_row])
            letters.append(CHARS[code - 1] if code else "")
        self.step += 1

    def _decide(self, logits: torch.Tensor) -> int:
        """The state code: the most probable *decision*, the states in which the user holds the
        floor (:data:`YIELD`) pooled into one (their most probable label stands for it). Both
        mean "stop now"; right after a barge-in the model splits its mass between them (is this
        a new question or an interruption?) and a label-wise argmax lets ``speak`` win.

        While speaking, it stops once that pooled probability reaches ``yield_threshold`` (1.0:
        only when it is the most probable decision): the training cut comes at a random frame
        60-120 ms after the barge-in, so a calibrated model spreads its stop over those frames
        (0.1-0.3 each) and the argmax waits for the last of them; a threshold is the decision
        rule for "stop within a deadline". The default, :data:`YIELD_THRESHOLD`, was chosen on
        duplex-tiny's valid split (training voices; README, Full duplex)."""
        probs = logits.float().softmax(-1)
        pooled = probs.clone()
        pooled[self.yield_codes] = 0.0
        user_floor = probs[self.yield_codes].sum()
        if user_floor > pooled.max() or (self.voiced and user_floor >= self.yield_threshold):
            return self.yield_codes[int(probs[self.yield_codes].argmax())]
        return int(pooled.argmax())

    def _speaking(self, frame: int) -> bool:
        """Whether the state already decided for system ``frame`` is ``speak``."""
        if self.state_row is None or frame not in self.codes[self.state_row]:
            return False
        return self.info.states[self.codes[self.state_row][frame]] == "speak"

    def _feed(self, column: np.ndarray) -> None:
        self.columns.append(column)
        if self.decoder.length + 1 > self.window:
            keep = np.stack(self.columns[-(self.window // 2):], axis=1)  # (R, window/2)
            self.decoder.reset()
            self.next = self.decoder.feed(keep)
        else:
            self.next = self.decoder.feed(column[:, None])

    def _say(self, frame: int, said: list[int], events: list[tuple[str, dict]]) -> None:
        """System frame ``frame`` is decided: voice it or stay silent, and report state changes."""
        unit = self.codes[0].pop(frame)
        if self.state_row is not None:
            token = self.info.states[self.codes[self.state_row].pop(frame)]
        else:
            token = "idle" if unit == self.info.silence_unit else "speak"
        voiced = token == "speak"
        if voiced:
            said.append(unit)
            if self.voice is not None:
                self.pending = np.concatenate([self.pending, self.voice.push([unit])])
        elif self.voiced and self.voice is not None:
            if token in YIELD:          # the user holds the floor: stop now
                self.pending = np.zeros(0, dtype=np.float32)
            else:                       # a pause or the end of a turn: the queued audio plays out
                self.pending = np.concatenate([self.pending, self.voice.flush()])
            self.voice.reset()
        self.voiced = voiced
        state = SESSION_STATE[token]
        if state != self.state:
            self.state = state
            events.append((state, {"frame": frame, "token": token}))
        self.said = frame + 1

    def _take(self, n: int) -> np.ndarray:
        audio = self.pending[:n]
        self.pending = self.pending[n:]
        return np.concatenate([audio, np.zeros(n - audio.size, dtype=np.float32)])
