"""One two-channel dialogue: audio per channel, time-stamped events, word alignments per channel.

Channel 0 is the *user* side (what a duplex system hears: the user, plus any non-query audio
that reaches the microphone), channel 1 the *system* side. Events say who does what when:

=============  ===================================================  ==================
kind           labels                                               channel
=============  ===================================================  ==================
turn           query (user, addressed to the system), response      0 query, 1 response
pause          pause (silence inside a turn of that channel)        0 or 1
backchannel    mm-hmm, uh-huh, yeah, right, okay, i see             0 or 1 (listener)
overlap        turn_start, backchannel, interruption                -1 (both)
interruption   barge_in (start: user onset; end: system silent)     0
non_query      noise_low, noise_mid, noise_high, third_voice,       0
               side_talk
=============  ===================================================  ==================

A channel *sounds* inside its turn, backchannel and non_query events, minus its pauses; overlaps
are exactly where both channels sound. :meth:`Dialogue.validate` checks all of this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from speechlm.core.errors import DataError
from speechlm.data.audio import SAMPLE_RATE, read_audio
from speechlm.data.dialogue.config import NOISE_LEVELS

USER, SYSTEM, BOTH = 0, 1, -1
N_CHANNELS = 2
DIALOGUE_SPLITS = ("train", "valid", "test", "heldout")
BACKCHANNELS = ("mm-hmm", "uh-huh", "yeah", "right", "okay", "i see")
LABELS: dict[str, tuple[str, ...]] = {
    "turn": ("query", "response"),
    "pause": ("pause",),
    "backchannel": BACKCHANNELS,
    "overlap": ("turn_start", "backchannel", "interruption"),
    "interruption": ("barge_in",),
    "non_query": NOISE_LEVELS + ("third_voice", "side_talk"),
}
CHANNELS_OF: dict[str, tuple[int, ...]] = {
    "turn": (USER, SYSTEM), "pause": (USER, SYSTEM), "backchannel": (USER, SYSTEM),
    "overlap": (BOTH,), "interruption": (USER,), "non_query": (USER,),
}
SOUNDING = ("turn", "backchannel", "non_query")
TOLERANCE_S = 0.01    # metadata times vs. each other and vs. the audio length
FRAME = 320           # 20 ms frames for energy checks

Interval = tuple[float, float]
Alignment = list[tuple[str, float, float]]


@dataclass(frozen=True)
class Event:
    """A time-stamped event; ``speaker`` and ``text`` are empty where they do not apply.

    >>> Event("turn", "query", 0, 0.5, 2.0, "en-us_m3", "How are you?").duration
    1.5
    """

    kind: str
    label: str
    channel: int
    start: float
    end: float
    speaker: str = ""
    text: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "channel": self.channel,
                "start": self.start, "end": self.end, "speaker": self.speaker, "text": self.text}

    @classmethod
    def from_dict(cls, d: dict) -> Event:
        return cls(d["kind"], d["label"], int(d["channel"]), float(d["start"]), float(d["end"]),
                   d.get("speaker") or "", d.get("text") or "")


@dataclass(frozen=True)
class Dialogue:
    """One conversation: ``channels[c]`` is FLAC bytes of mono 16 kHz audio, all the same length.

    ``speakers`` = (user, system); ``words[c]`` are the words audible in channel ``c`` as
    (word, start_s, end_s), from espeak's word events for synthetic corpora.
    """

    id: str
    split: str
    sample_rate: int
    duration: float
    speakers: tuple[str, str]
    channels: tuple[bytes, bytes]
    events: tuple[Event, ...]
    words: tuple[Alignment, Alignment] = field(default_factory=lambda: ([], []))

    def to_dict(self) -> dict:
        return {"id": self.id, "split": self.split, "sample_rate": self.sample_rate,
                "duration": self.duration, "speakers": list(self.speakers),
                "channels": list(self.channels), "events": [e.to_dict() for e in self.events],
                "words": [[{"label": w, "start": s, "end": e} for w, s, e in channel]
                          for channel in self.words]}

    @classmethod
    def from_dict(cls, record: dict) -> Dialogue:
        words = tuple([(d["label"], float(d["start"]), float(d["end"])) for d in channel or []]
                      for channel in record.get("words") or [])
        return cls(id=record["id"], split=record["split"], sample_rate=int(record["sample_rate"]),
                   duration=float(record["duration"]), speakers=tuple(record["speakers"]),
                   channels=tuple(record["channels"]),
                   events=tuple(Event.from_dict(e) for e in record.get("events") or []),
                   words=words)

    def of(self, kind: str, channel: int | None = None) -> list[Event]:
        """Events of one kind (optionally in one channel), in time order."""
        return [e for e in self.events if e.kind == kind and channel in (None, e.channel)]

    def sounding(self, channel: int) -> list[Interval]:
        """Where ``channel`` is declared to carry sound: sounding events minus its pauses."""
        spans = merge([(e.start, e.end) for e in self.events
                       if e.kind in SOUNDING and e.channel == channel])
        return subtract(spans, merge([(e.start, e.end) for e in self.of("pause", channel)]))

    def declared_overlaps(self) -> list[Interval]:
        return intersect(self.sounding(USER), self.sounding(SYSTEM))

    def user_segments(self) -> list[tuple[float, float, str]]:
        """Silence-mode labels of the user channel: (start, end, "query" | "non_query")."""
        spans = [(e.start, e.end, "query") for e in self.of("turn", USER)]
        spans += [(e.start, e.end, "non_query") for e in self.of("non_query")]
        return sorted(spans)

    def samples(self) -> np.ndarray:
        """Decoded audio, (2, T) float32 at 16 kHz."""
        channels = [read_audio(audio) for audio in self.channels]
        if len({c.size for c in channels}) > 1:
            raise DataError(f"channels have different lengths ({[c.size for c in channels]} "
                            f"samples)")
        return np.stack(channels)

    def validate(self, source: str = "", audio: np.ndarray | None = None) -> None:
        """Raise :class:`DataError` naming ``source`` and this dialogue on the first problem.

        Checks fields, labels, times inside the audio, that sounding events of one channel do
        not overlap, that pauses and interruptions sit where they claim, and that the declared
        overlap events are exactly where both channels sound. With ``audio`` ((2, T) samples) it
        also checks the length and that both channels carry energy in every declared overlap.
        """
        where = f"{source + ': ' if source else ''}dialogue {self.id!r}"
        try:
            _check_fields(self)
            _check_events(self)
            _check_consistency(self)
            if audio is not None:
                _check_audio(self, audio)
        except DataError as err:
            raise DataError(f"{where}: {err}") from None


def _check_fields(d: Dialogue) -> None:
    if not d.id:
        raise DataError("empty id")
    if d.split not in DIALOGUE_SPLITS:
        raise DataError(f"split {d.split!r} is not one of {DIALOGUE_SPLITS}")
    if d.sample_rate != SAMPLE_RATE or not d.duration > 0:
        raise DataError(f"sample_rate={d.sample_rate}, duration={d.duration} (need "
                        f"{SAMPLE_RATE} Hz and a positive duration)")
    for name, value in (("channels", d.channels), ("speakers", d.speakers), ("words", d.words)):
        if len(value) != N_CHANNELS:
            raise DataError(f"{name} has {len(value)} entries, expected {N_CHANNELS}")
    for channel, words in enumerate(d.words):
        previous = 0.0
        for word, start, end in words:
            if not previous - 1e-6 <= start <= end <= d.duration + TOLERANCE_S:
                raise DataError(f"channel {channel} word {word!r} [{start:.3f}, {end:.3f}] is not "
                                f"monotone or not inside 0..{d.duration:.3f} s")
            previous = end


def _check_events(d: Dialogue) -> None:
    for e in d.events:
        if e.kind not in LABELS:
            raise DataError(f"unknown event kind {e.kind!r} (expected one of {tuple(LABELS)})")
        if e.label not in LABELS[e.kind]:
            raise DataError(f"unknown {e.kind} label {e.label!r} (expected one of "
                            f"{LABELS[e.kind]})")
        if e.channel not in CHANNELS_OF[e.kind]:
            raise DataError(f"{e.kind} {e.label!r} on channel {e.channel} (allowed: "
                            f"{CHANNELS_OF[e.kind]})")
        if not (np.isfinite([e.start, e.end]).all() and 0 <= e.start < e.end
                <= d.duration + TOLERANCE_S):
            raise DataError(f"{e.kind} {e.label!r} at [{e.start:.3f}, {e.end:.3f}] s is empty or "
                            f"outside the audio (0..{d.duration:.3f} s)")
    for kind, channel in (("turn", USER), ("turn", SYSTEM)):
        for e in d.of(kind, channel):
            if (e.label == "query") != (channel == USER):
                raise DataError(f"turn {e.label!r} on channel {channel}: queries are on channel "
                                f"{USER}, responses on channel {SYSTEM}")


def _check_consistency(d: Dialogue) -> None:
    for channel in (USER, SYSTEM):
        claims = sorted((e.start, e.end, e.kind) for e in d.events
                        if e.kind in SOUNDING and e.channel == channel)
        for (s0, e0, k0), (s1, e1, k1) in zip(claims, claims[1:]):
            if s1 < e0 - TOLERANCE_S:
                raise DataError(f"channel {channel}: {k0} [{s0:.3f}, {e0:.3f}] and {k1} "
                                f"[{s1:.3f}, {e1:.3f}] claim the same time")
        turns = d.of("turn", channel)
        for p in d.of("pause", channel):
            if not any(t.start <= p.start and p.end <= t.end for t in turns):
                raise DataError(f"pause [{p.start:.3f}, {p.end:.3f}] on channel {channel} is not "
                                f"inside a turn of that channel")
    for i in d.of("interruption"):
        cut = [t for t in d.of("turn", SYSTEM) if t.start < i.start < t.end + TOLERANCE_S]
        if not cut or cut[0].end > i.end + TOLERANCE_S:
            raise DataError(f"interruption [{i.start:.3f}, {i.end:.3f}] does not stop a response "
                            f"turn (the system must be speaking at the barge-in and silent by its "
                            f"end)")
        if not any(abs(t.start - i.start) <= TOLERANCE_S for t in d.of("turn", USER)):
            raise DataError(f"interruption at {i.start:.3f} s has no query turn starting there")
    declared = merge([(e.start, e.end) for e in d.of("overlap")])
    actual = d.declared_overlaps()

    def matched(span: Interval, others: list[Interval]) -> bool:
        return any(abs(span[0] - o[0]) <= TOLERANCE_S and abs(span[1] - o[1]) <= TOLERANCE_S
                   for o in others)

    for start, end in declared:
        if not matched((start, end), actual):
            raise DataError(f"overlap declared at [{start:.3f}, {end:.3f}] s, where the "
                            f"channels' events do not overlap")
    for start, end in actual:
        if not matched((start, end), declared):
            raise DataError(f"both channels sound at [{start:.3f}, {end:.3f}] s but no overlap "
                            f"is declared")


def _check_audio(d: Dialogue, audio: np.ndarray) -> None:
    if audio.ndim != 2 or audio.shape[0] != N_CHANNELS:
        raise DataError(f"audio has shape {audio.shape}, expected ({N_CHANNELS}, samples)")
    seconds = audio.shape[1] / d.sample_rate
    if abs(seconds - d.duration) > TOLERANCE_S:
        raise DataError(f"duration {d.duration:.3f} s does not match the audio ({seconds:.3f} s)")
    active = np.stack([active_frames(channel) for channel in audio])
    for start, end in merge([(e.start, e.end) for e in d.of("overlap")]):
        a, b = int(start * SAMPLE_RATE) // FRAME, -(-int(end * SAMPLE_RATE) // FRAME)
        for channel in (USER, SYSTEM):
            if not active[channel, a:b].any():
                raise DataError(f"overlap declared at [{start:.3f}, {end:.3f}] s but channel "
                                f"{channel} is silent there")


def frame_rms(samples: np.ndarray, frame: int = FRAME) -> np.ndarray:
    """RMS of consecutive ``frame``-sample frames (the last partial frame is zero-padded)."""
    padded = np.pad(samples, (0, -samples.size % frame)).reshape(-1, frame)  # (frames, frame)
    return np.sqrt(np.mean(padded.astype(np.float64) ** 2, axis=1))


def active_frames(samples: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """Frames louder than 3x the channel's noise floor (its 5th-percentile frame RMS) and than
    ``floor`` (-40 dBFS): the dither of a synthetic corpus is inactive, speech is active."""
    rms = frame_rms(samples)
    return rms > max(floor, 3 * float(np.percentile(rms, 5)))


def merge(spans: list[Interval]) -> list[Interval]:
    """Sorted union of intervals (touching ones are joined)."""
    out: list[Interval] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Intersection of two sorted, disjoint interval lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """``a`` minus ``b`` (both sorted and disjoint)."""
    out = []
    for start, end in a:
        for b0, b1 in b:
            if b1 <= start or b0 >= end:
                continue
            if b0 > start:
                out.append((start, b0))
            start = max(start, b1)
        if start < end:
            out.append((start, end))
    return out
