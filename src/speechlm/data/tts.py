"""libespeak-ng through ctypes (the ``espeakng-loader`` wheel ships the library and its data).

espeak keeps global state per process, so one :class:`Espeak` lives in each worker process.
Word and phoneme events give alignments; we convert them to seconds at 16 kHz.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import espeakng_loader
import numpy as np

from speechlm.core.errors import SpeechLMError
from speechlm.data.audio import SAMPLE_RATE, resample

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8, _PHONEMES_INPUT = 0x01, 0x100
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EVENT_END_OF_LIST, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
PAUSE_PHONES = {"_", "_:", "_!", "_;", "_^_"}
SILENCE = "sil"
_PUNCTUATION = ",.;:!?\"'()-"


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """An espeak voice (language variant + voice variant) with its prosody settings."""

    name: str          # e.g. "en-us+m3"
    rate: int = 175    # words per minute
    pitch: int = 50    # 0..100
    range: int = 50    # 0..100 pitch range


@dataclass(frozen=True)
class Style:
    """A speaking style: offsets to a voice's prosody, the sentence-final punctuation (espeak's
    clause intonation: "." fall, "?" rise, "!" exclamation) and optionally a breathy variant."""

    name: str
    pitch: int = 0              # added to Voice.pitch (clipped to 0..100)
    range: int = 0              # added to Voice.range (clipped to 0..100)
    rate: float = 1.0           # multiplies words per minute
    end: str = "."              # replaces the sentence's final punctuation
    variant: str | None = None  # espeak variant replacing the voice's own (gendered: +"f")

    def apply(self, voice: Voice, text: str) -> tuple[Voice, str]:
        """The voice and text that speak ``text`` in this style."""
        name = voice.name
        if self.variant:
            language, _, own = name.partition("+")
            name = f"{language}+{self.variant}{'f' if own.startswith('f') else ''}"
        styled = Voice(name, rate=int(round(voice.rate * self.rate)),
                       pitch=int(np.clip(voice.pitch + self.pitch, 0, 100)),
                       range=int(np.clip(voice.range + self.range, 0, 100)))
        return styled, text.rstrip(".!?;:, ") + self.end


# Offsets sized so that each style is measurably apart on held-out voices
# (benchmarks/prosody_styles.py): excited is higher, wider and faster; sad lower, flatter, slower.
STYLES = {style.name: style for style in (
    Style("neutral"),
    Style("excited", pitch=20, range=40, rate=1.2, end="!"),
    Style("sad", pitch=-15, range=-35, rate=0.8),
    Style("question", range=10, end="?"),
    Style("whisper", rate=0.9, variant="whisper"),
)}


@dataclass
class Synthesis:
    samples: np.ndarray                     # (T,) float32 at 16 kHz
    words: list[tuple[str, float, float]]   # (word, start_s, end_s)
    phones: list[tuple[str, float, float]]  # (espeak phoneme without stress, start_s, end_s)


def normalize_phone(name: str) -> str:
    """Strip espeak stress marks so ABX/PNMI see phone identity, and map pauses to 'sil'."""
    if name in PAUSE_PHONES or name.startswith("_"):
        return SILENCE
    return name.replace("'", "").replace(",", "") or SILENCE


class Espeak:
    """One synthesizer per process. Rate/pitch/range are set on every call (espeak keeps them)."""

    def __init__(self) -> None:
        self._lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        data_parent = os.path.dirname(espeakng_loader.get_data_path()).encode()
        self.native_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, _INITIALIZE_PHONEME_EVENTS)
        if self.native_rate <= 0:
            raise SpeechLMError("libespeak-ng failed to initialise (espeak_Initialize returned "
                                f"{self.native_rate})")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            ev = events[i]
            label = bytes(ev.id).split(b"\0")[0].decode("ascii", "replace") \
                if ev.type == _EVENT_PHONEME else ""
            self._events.append((ev.type, ev.text_position, ev.length, ev.sample, label))
            i += 1
        return 0

    def synthesize(self, text: str, voice: Voice, phoneme_input: bool = False) -> Synthesis:
        """Speak ``text`` (or ``[[phonemes]]`` with ``phoneme_input``) with ``voice``."""
        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise SpeechLMError(f"espeak voice {voice.name!r} does not exist")
        for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.range),
                             (_VOLUME, 100)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._lib.espeak_ng_SetRandSeed(0)  # breathy variants (f*) add noise from this generator
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        flags = _CHARS_UTF8 | (_PHONEMES_INPUT if phoneme_input else 0)
        status = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, flags, None, None)
        self._lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise SpeechLMError(f"espeak could not synthesize {text[:40]!r} (status {status})")
        pcm = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        total = pcm.size
        scale = 1.0 / self.native_rate
        phones: list[tuple[str, float, float]] = []
        words: list[tuple[str, float, float]] = []
        word_phones: list[tuple[str, float, float]] = []

        tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        word_token: int | None = None
        previous_token: int | None = None

        def close_word() -> None:
            nonlocal previous_token
            spoken = [p for p in word_phones if p[0] != SILENCE]
            if word_token is None or not spoken:
                return
            if word_token == previous_token:  # espeak split one written token ("can't")
                label, start, _ = words.pop()
            else:
                start, end = tokens[word_token]
                label, start = text[start:end].strip(_PUNCTUATION), spoken[0][1]
            words.append((label, start, spoken[-1][2]))
            previous_token = word_token

        phone_events = [e for e in self._events if e[0] in (_EVENT_PHONEME, _EVENT_WORD)]
        phone_starts = [e[3] for e in phone_events if e[0] == _EVENT_PHONEME] + [total]
        k = 0
        for kind, text_pos, length, sample, label in phone_events:
            if kind == _EVENT_WORD:
                close_word()
                word_token = next((i for i, (a, b) in enumerate(tokens) if a <= text_pos - 1 < b),
                                  None) if length else None
                word_phones = []
                continue
            start, end = phone_starts[k] * scale, max(phone_starts[k + 1], phone_starts[k]) * scale
            k += 1
            if end <= start:
                continue
            span = (normalize_phone(label), start, min(end, total * scale))
            phones.append(span)
            word_phones.append(span)
        close_word()
        samples = resample(pcm, self.native_rate, SAMPLE_RATE)
        return Synthesis(samples=samples, words=words, phones=phones)


def in_fresh_processes(fn: Callable, chunks: Iterable, workers: int) -> Iterator:
    """Yield ``fn(chunk)`` for each chunk, in order, each computed in a brand-new process.

    libespeak-ng keeps wave-generator state in C statics (pitch-flutter phase, gain) that no API
    call resets, so a process's output depends on everything it synthesized before. Forking every
    chunk from a clean fork server (which never loads espeak) makes the audio depend only on the
    chunk. ``fn`` must be a module-level function.

    A worker that dies (a crash inside the C library) raises an error here: a
    ``multiprocessing.Pool`` would replace the worker and wait forever for the lost result (a CI
    run once sat idle for over 10 minutes inside dialogue synthesis).
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([fn.__module__])  # children start with fn's imports done
    with ProcessPoolExecutor(workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        try:
            yield from pool.map(fn, chunks)
        except BrokenProcessPool as err:
            raise SpeechLMError(f"{fn.__module__}.{fn.__name__}: a worker process died "
                                f"({err}); nothing was written for the chunks after it") from None
