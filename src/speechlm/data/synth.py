"""The embedded default corpus: multi-voice espeak-ng speech from public-domain text.

Deterministic for a seed: sentence order, voice assignment, prosody and dither noise all come
from seeded generators, and results are consumed in task order from the worker pool.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from speechlm.core.errors import DataError
from speechlm.core.progress import progress_bar
from speechlm.data.audio import SAMPLE_RATE, encode_flac
from speechlm.data.corpus import Corpus, CorpusWriter, Utterance
from speechlm.data.tts import STYLES, Espeak, Voice, in_fresh_processes

log = logging.getLogger(__name__)

LANGUAGES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc",
             "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = tuple(f"m{i}" for i in range(1, 9)) + tuple(f"f{i}" for i in range(1, 6))
# Held-out voices come only from here and training voices never do: catalogue voices that Whisper
# tiny.en reads well (WER 0.12-0.21 on 5 sentences each vs 0.37 over all 104 voices; rerun the
# scan with `benchmarks/heldout_voices.py --scan`), both sexes, 4 accents. Per-voice WER in the
# demo corpus: benchmarks/results/heldout_voices.json. Taken in this order (sexes and accents
# alternate), so every corpus with n held-out voices has the same, varied ones.
HELDOUT_VOICES = ("en-gb-x-rp+m3", "en+f5", "en-us+m1", "en-us+f3", "en-us-nyc+m7",
                  "en-gb-x-rp+f2", "en-us+m2", "en+f3")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,;:'.!?-]*$")


def default_text_files() -> list[Path]:
    """The public-domain texts shipped inside the package (see assets/text/README.md)."""
    folder = resources.files("speechlm.data") / "assets" / "text"
    return sorted(Path(str(p)) for p in folder.iterdir() if str(p).endswith(".txt"))


def read_sentences(paths: list[Path], min_words: int = 4, max_words: int = 20) -> list[str]:
    """Split text files into clean sentences that espeak reads word for word (no digits/symbols)."""
    sentences: list[str] = []
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: text file not found")
        text = path.read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"\[.*?\]|_|\"|--", " ", text)
        for raw in _SENTENCE_END.split(re.sub(r"\s+", " ", text)):
            sentence = raw.strip().strip("'")
            if _ALLOWED.match(sentence) and min_words <= len(sentence.split()) <= max_words:
                sentences.append(sentence)
    unique = list(dict.fromkeys(sentences))
    if not unique:
        raise DataError(f"no usable sentences in {', '.join(map(str, paths))}")
    return unique


def text_files_from(path: str | Path | None) -> list[Path]:
    if path is None:
        return default_text_files()
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataError(f"{path}: no .txt files in this folder")
        return files
    return [path]


def pick_voices(n_train: int, n_heldout: int, seed: int) -> tuple[list[Voice], list[Voice]]:
    """Distinct language x variant voices with per-speaker base prosody; held-out ones are the first
    ``n_heldout`` of HELDOUT_VOICES, training ones a seeded choice from the rest of the catalogue."""
    catalogue = [f"{lang}+{var}" for lang, var in itertools.product(LANGUAGES, VARIANTS)]
    pool = [name for name in catalogue if name not in HELDOUT_VOICES]
    if n_train > len(pool) or n_heldout > len(HELDOUT_VOICES):
        raise DataError(f"asked for {n_train} training and {n_heldout} held-out voices; at most "
                        f"{len(pool)} and {len(HELDOUT_VOICES)} exist")
    rng = np.random.default_rng(seed)
    names = ([pool[i] for i in rng.permutation(len(pool))[:n_train]]
             + list(HELDOUT_VOICES[:n_heldout]))
    voices = [Voice(name, rate=int(rng.integers(145, 195)), pitch=int(rng.integers(30, 70)),
                    range=int(rng.integers(30, 75))) for name in names]
    return voices[:n_train], voices[n_train:]


def jittered(voice: Voice, rng: np.random.Generator) -> Voice:
    """The speaker's base prosody varied per utterance (rate +-15 wpm, pitch +-8, range +-10)."""
    return Voice(voice.name, rate=int(voice.rate + rng.integers(-15, 16)),
                 pitch=int(np.clip(voice.pitch + rng.integers(-8, 9), 0, 100)),
                 range=int(np.clip(voice.range + rng.integers(-10, 11), 0, 100)))


def speaker_id(voice: Voice) -> str:
    return voice.name.replace("+", "_")


@dataclass(frozen=True)
class _Task:
    utt_id: str
    text: str
    voice: Voice
    speaker: str
    split: str
    noise_seed: int
    noise_std: float
    style: str | None = None


def _synthesize_chunk(tasks: list[_Task]) -> list[Utterance]:
    espeak = Espeak()
    return [_synthesize(espeak, task) for task in tasks]


def _synthesize(espeak: Espeak, task: _Task) -> Utterance:
    result = espeak.synthesize(task.text, task.voice)
    samples = result.samples
    if task.noise_std > 0:  # dither: exact digital silence is unlike any microphone
        noise = np.random.default_rng(task.noise_seed).normal(0.0, task.noise_std, samples.size)
        samples = samples + noise.astype(np.float32)
    duration = samples.size / SAMPLE_RATE

    def clamp(spans):
        return [(label, min(s, duration), min(e, duration)) for label, s, e in spans]

    return Utterance(id=task.utt_id, speaker=task.speaker, text=task.text, sample_rate=SAMPLE_RATE,
                     duration=duration, audio=encode_flac(samples), words=clamp(result.words),
                     phones=clamp(result.phones), split=task.split, style=task.style)


def _tasks(sentences: list[str], train: list[Voice], heldout: list[Voice], seed: int,
           valid_fraction: float, test_fraction: float, noise_std: float,
           styles: tuple[str, ...] = ()) -> Iterator[_Task]:
    rng = np.random.default_rng(seed + 1)
    style_rng = np.random.default_rng([seed, 2])  # its own stream: no styles = same corpus as before
    voices = [(v, "heldout") for v in heldout] + [(v, "train") for v in train]
    order = rng.permutation(len(sentences))
    for i, idx in enumerate(itertools.cycle(order)):
        voice, split = voices[i % len(voices)]
        if split == "train":  # one draw, as before the test split: [0, v) valid, [v, v+t) test
            draw = rng.random()
            split = "valid" if draw < valid_fraction else \
                "test" if draw < valid_fraction + test_fraction else "train"
        speaker = speaker_id(voice)
        voice, text = jittered(voice, rng), sentences[idx]
        style = styles[style_rng.integers(len(styles))] if styles else None
        if style is not None:
            voice, text = STYLES[style].apply(voice, text)
        yield _Task(f"{speaker}-{i:06d}", text, voice, speaker, split,
                    noise_seed=seed * 1_000_003 + i, noise_std=noise_std, style=style)


def synthesize_corpus(out_dir: str | Path, hours: float = 0.25, voices: int = 12,
                      heldout_voices: int = 3, seed: int = 0, text: str | Path | None = None,
                      workers: int = 2, valid_fraction: float = 0.05, test_fraction: float = 0.05,
                      noise_std: float = 3e-3, chunk_size: int = 16, show_progress: bool = True,
                      styles: Sequence[str] | None = None) -> Corpus:
    """Synthesize about ``hours`` of speech; ``valid_fraction`` of train-voice utterances go to
    valid and ``test_fraction`` to test (see :mod:`speechlm.data.corpus` for the splits).

    Utterances are made ``chunk_size`` at a time, each chunk in a fresh process, so the audio
    depends only on the seed (not on ``workers``); see :func:`in_fresh_processes`. ``styles``
    (names in :data:`speechlm.data.tts.STYLES`) gives each utterance a random one of them, recorded
    in its ``style`` field.
    """
    if hours <= 0 or voices < 1 or heldout_voices < 0:
        raise DataError(f"need hours > 0 and voices >= 1 (got hours={hours}, voices={voices}, "
                        f"heldout_voices={heldout_voices})")
    styles = tuple(styles or ())
    unknown = sorted(set(styles) - set(STYLES))
    if unknown:
        raise DataError(f"unknown style(s) {', '.join(unknown)}; known: {', '.join(STYLES)}")
    files = text_files_from(text)
    sentences = read_sentences(files)
    train, heldout = pick_voices(voices, heldout_voices, seed)
    meta = {"name": Path(out_dir).name, "generator": "espeak-ng synth",
            "params": {"hours": hours, "voices": voices, "heldout_voices": heldout_voices,
                       "seed": seed, "text": [str(f) for f in files], "noise_std": noise_std,
                       "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                       **({"styles": list(styles)} if styles else {})},
            "train_voices": [v.name for v in train], "heldout_voices": [v.name for v in heldout]}
    writer = CorpusWriter(out_dir, meta)
    target = hours * 3600.0
    total = 0.0
    tasks = _tasks(sentences, train, heldout, seed, valid_fraction, test_fraction, noise_std, styles)
    with progress_bar("synthesizing", total=target, unit="s audio",
                      enabled=show_progress) as advance:
        while total < target:  # bounded rounds: Pool.imap would drain an endless iterator
            chunks = [list(itertools.islice(tasks, chunk_size)) for _ in range(4 * workers)]
            for utt in itertools.chain.from_iterable(
                    in_fresh_processes(_synthesize_chunk, chunks, workers)):
                writer.add(utt)
                total += utt.duration
                advance(utt.duration)
                if total >= target:
                    break
    log.info("synthesized %.1f s of audio into %s", total, out_dir)
    return writer.close()
