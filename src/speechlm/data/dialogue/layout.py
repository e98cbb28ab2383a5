"""Lay synthesized speech out on a two-channel timeline: turns, gaps, overlaps, backchannels,
pauses, interruptions and non-query audio, with an event for each.

Everything here is deterministic given the script and its seed: :func:`compose` is what a
worker process runs for one dialogue. Times are snapped to whole samples so that event times,
word times and the audio agree exactly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from speechlm.core.errors import DataError
from speechlm.data.audio import SAMPLE_RATE, encode_flac
from speechlm.data.dialogue.record import (BACKCHANNELS, SYSTEM, USER, Alignment, Dialogue,
                                           Event, Interval, intersect, merge)
from speechlm.data.dialogue.config import DialogueConfig
from speechlm.data.dialogue.script import DialogueScript, NonQuery, pick
from speechlm.data.tts import Espeak, Voice

_FADE = 80                                      # 5 ms fades where a clip starts or is cut
_ONSET_WINDOW, _ONSET_FLOOR = 160, 0.01         # a clip starts where 10 ms of it exceed -40 dBFS
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


def snap(t: float) -> float:
    return round(t * SAMPLE_RATE) / SAMPLE_RATE


@dataclass(frozen=True)
class Speech:
    """A clip trimmed to its sound (first word start .. last word end); words relative to it."""

    samples: np.ndarray
    words: Alignment = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.samples.size / SAMPLE_RATE

    def cut(self, seconds: float) -> Speech:
        """The first ``seconds`` with a fade-out (a speaker stopping); words that ended survive."""
        n = max(1, int(round(seconds * SAMPLE_RATE)))
        samples = self.samples[:n].copy()
        fade = min(_FADE * 2, n)
        samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return Speech(samples, [w for w in self.words if w[2] <= n / SAMPLE_RATE])


def speak(espeak: Espeak, text: str, voice: Voice) -> Speech:
    """Synthesize ``text`` and trim it to its words, so a clip's extent is where it sounds."""
    result = espeak.synthesize(text, voice)
    if not result.words:
        raise DataError(f"espeak produced no words for {text[:40]!r} with voice {voice.name}")
    first = _audible_from(result.samples, int(result.words[0][1] * SAMPLE_RATE))
    last = min(result.samples.size, math.ceil(result.words[-1][2] * SAMPLE_RATE))
    samples = result.samples[first:last].copy()
    ramp = np.linspace(0.0, 1.0, min(_FADE, samples.size // 2), dtype=np.float32)
    samples[:ramp.size] *= ramp
    samples[samples.size - ramp.size:] *= ramp[::-1]
    offset = first / SAMPLE_RATE
    words = [(w, max(0.0, s - offset), min(e - offset, samples.size / SAMPLE_RATE))
             for w, s, e in result.words]
    return Speech(samples, words)


def _audible_from(samples: np.ndarray, start: int) -> int:
    """The first sample from ``start`` on where the next 10 ms are louder than -40 dBFS (the floor
    of :func:`~speechlm.data.dialogue.record.active_frames`). espeak's first word can begin tens of
    ms before it sounds (a breathy /h/); a barge-in 50 ms long must be audible in both channels."""
    power = np.concatenate([[0.0], np.cumsum(samples[start:].astype(np.float64) ** 2)])
    mean = (power[_ONSET_WINDOW:] - power[:-_ONSET_WINDOW]) / _ONSET_WINDOW
    loud = np.flatnonzero(mean > _ONSET_FLOOR ** 2)
    return start + int(loud[0]) if loud.size else start


def pink_noise(seconds: float, level_db: float, rng: np.random.Generator) -> Speech:
    """1/f noise at an RMS of ``level_db`` dBFS with 50 ms fades (a fan, traffic, a room)."""
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    noise *= 10 ** (level_db / 20) / np.sqrt(np.mean(noise ** 2))
    ramp = np.linspace(0.0, 1.0, 800)
    noise[:800] *= ramp
    noise[-800:] *= ramp[::-1]
    return Speech(noise.astype(np.float32))


@dataclass(frozen=True)
class Segment:
    """What one source does in one channel: a turn, a backchannel or a non-query stretch.

    ``parts`` are (start_s, clip) in time order; the silences between the parts of a turn are
    its pauses.
    """

    kind: str
    label: str
    channel: int
    speaker: str
    text: str
    parts: tuple[tuple[float, Speech], ...]
    gain: float = 1.0

    @property
    def start(self) -> float:
        return self.parts[0][0]

    @property
    def end(self) -> float:
        return self.parts[-1][0] + self.parts[-1][1].duration

    def sounding(self) -> list[Interval]:
        return [(t, t + clip.duration) for t, clip in self.parts]

    def words(self) -> Alignment:
        return _words(self.parts)

    def stopped_at(self, stop: float) -> Segment:
        """This segment as spoken by someone who falls silent at ``stop``."""
        parts = []
        for t, clip in self.parts:
            if t >= stop:
                break
            parts.append((t, clip if t + clip.duration <= stop else clip.cut(stop - t)))
        text = " ".join(w for w, _, _ in _words(parts))
        return replace(self, parts=tuple(parts), text=text)

    def events(self) -> list[Event]:
        events = [Event(self.kind, self.label, self.channel, self.start, self.end, self.speaker,
                        self.text)]
        if self.kind == "turn":
            events += [Event("pause", "pause", self.channel, a[1], b[0], self.speaker)
                       for a, b in zip(self.sounding(), self.sounding()[1:])]
        return events


class Timeline:
    """Segments placed so far; refuses two sources in one channel at the same time."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.extra: list[Event] = []

    def busy(self, channel: int) -> list[Interval]:
        return merge([span for s in self.segments if s.channel == channel
                      for span in s.sounding()])

    def free(self, channel: int, start: float, end: float) -> bool:
        return not intersect(self.busy(channel), [(start, end)])

    def add(self, segment: Segment) -> Segment:
        if not self.free(segment.channel, segment.start, segment.end):
            raise RuntimeError(f"layout bug: channel {segment.channel} is busy at "
                               f"{segment.start:.3f}-{segment.end:.3f} s")
        self.segments.append(segment)
        return segment

    @property
    def end(self) -> float:
        return max(s.end for s in self.segments)

    def render(self, seconds: float, noise_std: float, rng: np.random.Generator) -> np.ndarray:
        """(2, T) float32: every clip at its place, plus dither noise in both channels."""
        audio = np.zeros((2, int(round(seconds * SAMPLE_RATE))), dtype=np.float32)
        for segment in self.segments:
            for t, clip in segment.parts:
                a = int(round(t * SAMPLE_RATE))
                audio[segment.channel, a:a + clip.samples.size] += segment.gain * clip.samples
        if noise_std > 0:  # dither: exact digital silence is unlike any microphone
            audio += np.float32(noise_std) * rng.standard_normal(audio.shape, dtype=np.float32)
        return audio

    def events(self) -> list[Event]:
        """Every segment's events, the extra ones, and an overlap wherever both channels sound."""
        events = [e for s in self.segments for e in s.events()] + self.extra
        for start, end in intersect(self.busy(USER), self.busy(SYSTEM)):
            events.append(Event("overlap", self._overlap_label(start, end), -1, start, end))
        return sorted(events, key=lambda e: (e.start, e.end, e.kind))

    def _overlap_label(self, start: float, end: float) -> str:
        if any(s.kind == "backchannel" and s.start < end and start < s.end for s in self.segments):
            return "backchannel"
        if any(e.kind == "interruption" and e.start - 1e-6 <= start < e.end for e in self.extra):
            return "interruption"
        return "turn_start"


@dataclass
class _Composer:
    """Builds one dialogue's timeline from its script (see :func:`compose`)."""

    espeak: Espeak
    script: DialogueScript
    config: DialogueConfig
    rng: np.random.Generator
    timeline: Timeline = field(default_factory=Timeline)

    def turn(self, channel: int, text: str, start: float) -> Segment:
        """A turn of sentences with pauses between them; sometimes a hesitation mid-sentence."""
        voice, speaker = self.script.voice(channel), self.script.speakers[channel]
        pieces = [s for s in _SENTENCES.split(text) if s]
        if self.rng.random() < self.config.pause_prob:
            pieces = _split_longest(pieces)
        parts, t = [], snap(start)
        for i, piece in enumerate(pieces):
            clip = speak(self.espeak, piece, voice)
            parts.append((t, clip))
            hesitation = i + 1 < len(pieces) and not piece.rstrip().endswith((".", "!", "?"))
            low, high = self.config.pause_s if hesitation else (0.2, 0.6)
            t = snap(t + clip.duration + self.rng.uniform(low, high))
        label = "query" if channel == USER else "response"
        return Segment("turn", label, channel, speaker, text, tuple(parts))

    def response_start(self, query: Segment) -> float:
        """Start of the reply: in overlap at one of the last words, or after a natural gap."""
        last_start, last_clip = query.parts[-1]
        candidates = [last_start + s for _, s, _ in last_clip.words
                      if 0.12 <= query.end - (last_start + s) <= 0.7]
        if candidates and self.rng.random() < self.config.overlap_prob:
            return snap(pick(self.rng, candidates))
        gap = float(np.clip(self.rng.lognormal(np.log(self.config.gap_median_s), 0.5), 0.08, 1.5))
        return snap(query.end + gap)

    def backchannel(self, speaker_turn: Segment, listener: int, before: float) -> None:
        """Maybe one backchannel from ``listener`` during a turn of 2 s or more: in one of its
        pauses (no overlap) or starting on one of its words (overlap; for the user with
        probability ``user_backchannel_overlap``, for the system half the time)."""
        if speaker_turn.end - speaker_turn.start < 2.0 or \
                self.rng.random() >= self.config.backchannel_prob:
            return
        word = pick(self.rng, BACKCHANNELS)
        clip = speak(self.espeak, word, self.script.voice(listener))
        pauses = [(a[1], b[0]) for a, b in zip(speaker_turn.sounding(), speaker_turn.sounding()[1:])
                  if b[0] - a[1] >= clip.duration + 0.2]
        onsets = [t for w in speaker_turn.words() if (t := w[1]) >= speaker_turn.start + 0.8]
        overlap = self.config.user_backchannel_overlap if listener == USER else 0.5
        starts = onsets if self.rng.random() < overlap else [p[0] + 0.1 for p in pauses]
        if not starts:
            return
        start = snap(pick(self.rng, starts))
        end = start + clip.duration
        if end <= min(before, speaker_turn.end) and self.timeline.free(listener, start, end):
            self.timeline.add(Segment("backchannel", word, listener,
                                      self.script.speakers[listener], word, ((start, clip),)))

    def non_query(self, nq: NonQuery, start: float) -> float:
        """Audio in the user channel that is not addressed to the system; returns its end."""
        t = snap(start)
        if nq.label in self.config.noise_db:
            seconds = self.rng.uniform(1.0, 3.0)
            noise = pink_noise(seconds, self.config.noise_db[nq.label], self.rng)
            segment = Segment("non_query", nq.label, USER, "", "", ((t, noise),))
            return self.timeline.add(segment).end
        for i, line in enumerate(nq.lines):  # third voice: one line; side talk: user and other
            other = nq.label == "third_voice" or i % 2 == 1
            voice = self.script.other if other else self.script.voice(USER)
            speaker = self.script.other_speaker if other else self.script.speakers[USER]
            gain = self.rng.uniform(*self.config.other_gain) if other else 1.0
            clip = speak(self.espeak, line, voice)
            t = self.timeline.add(Segment("non_query", nq.label, USER, speaker, line,
                                          ((t, clip),), gain)).end
            t = snap(t + self.rng.uniform(0.2, 0.7))
        return self.timeline.end

    def interrupt(self, response: Segment, user_free: float) -> tuple[float, float] | None:
        """(barge-in, stop): the user (silent from ``user_free``) starts inside one of the
        response's words, 0.15-1 s into it (``early_interruption_prob``: the two started
        almost together) or after its first second; the system is silent within
        ``interrupt_stop_ms``."""
        early = self.rng.random() < self.config.early_interruption_prob
        lo, hi = (response.start + 0.15, response.start + 1.0) if early else \
            (response.start + 1.0, math.inf)
        lo = max(lo, user_free)
        words = [w for w in response.words()
                 if lo <= w[1] < hi and w[2] <= response.end - 0.5]
        if not words:
            return None
        _, w0, w1 = pick(self.rng, words)
        barge = snap(w0 + self.rng.uniform(0.0, 0.5) * (w1 - w0))
        latency = self.rng.uniform(0.5, 1.0) * self.config.interrupt_stop_ms / 1000
        return barge, snap(barge + latency)

    def exchange(self, question: str, answer: str, start: float,
                 interruption: tuple[str, str] | None) -> float:
        """Query, response (maybe interrupted and answered again) with backchannels; its end."""
        query = self.turn(USER, question, start)
        system_free = max((end for _, end in self.timeline.busy(SYSTEM)), default=0.0) + 0.1
        response = self.turn(SYSTEM, answer, max(self.response_start(query), system_free))
        self.timeline.add(query)
        self.backchannel(query, SYSTEM, before=response.start - 0.2)
        cut = self.interrupt(response, query.end + 0.1) if interruption else None
        if cut is None:
            self.timeline.add(response)
            self.backchannel(response, USER, before=response.end)
            return response.end
        barge, stop = cut
        response = self.timeline.add(response.stopped_at(stop))
        self.backchannel(response, USER, before=barge - 0.3)
        self.timeline.extra.append(Event("interruption", "barge_in", USER, barge, stop,
                                         self.script.speakers[USER]))
        return self.exchange(*interruption, start=barge, interruption=None)

    def run(self) -> tuple[Dialogue, np.ndarray]:
        t = self.rng.uniform(0.3, 1.0)
        for ex in self.script.exchanges:
            if ex.non_query is not None:
                t = self.non_query(ex.non_query, t) + self.rng.uniform(0.8, 2.0)
            t = self.exchange(ex.question, ex.answer, t, ex.interruption)
            t += self.rng.uniform(0.4, 1.5)
        seconds = snap(self.timeline.end + self.rng.uniform(0.3, 1.0))
        audio = self.timeline.render(seconds, self.config.noise_std, self.rng)
        words = tuple(sorted((w for s in self.timeline.segments if s.channel == c
                              for w in s.words()), key=lambda w: w[1]) for c in (USER, SYSTEM))
        dialogue = Dialogue(self.script.id, self.script.split, SAMPLE_RATE,
                            audio.shape[1] / SAMPLE_RATE, self.script.speakers,
                            (b"", b""), tuple(self.timeline.events()), words)
        return dialogue, audio


def _words(parts) -> Alignment:
    return [(w, t + s, t + e) for t, clip in parts for w, s, e in clip.words]


def _split_longest(pieces: list[str]) -> list[str]:
    """Split the longest sentence at a comma (or its middle word): a hesitation pause."""
    i = max(range(len(pieces)), key=lambda k: len(pieces[k].split()))
    words = pieces[i].split()
    if len(words) < 4:
        return pieces
    commas = [k + 1 for k, w in enumerate(words[:-2]) if w.endswith(",") and k >= 1]
    at = commas[len(commas) // 2] if commas else len(words) // 2
    return pieces[:i] + [" ".join(words[:at]), " ".join(words[at:])] + pieces[i + 1:]


def compose(espeak: Espeak, script: DialogueScript, config: DialogueConfig) -> Dialogue:
    """Synthesize and lay out one scripted dialogue, check it against its own audio, encode it."""
    dialogue, audio = _Composer(espeak, script, config, np.random.default_rng(script.seed)).run()
    dialogue.validate("synthesized", audio=audio)
    return replace(dialogue, channels=tuple(encode_flac(channel) for channel in audio))
