"""What the prosody tokenizers share: reading a corpus split's F0 tracks, and their directories
(``config.json`` + safetensors + ``speakers.json``) with one-line errors for missing or corrupt
files."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechlm.core.errors import CheckpointError, DataError
from speechlm.core.files import read_json
from speechlm.core.progress import progress_bar
from speechlm.data.corpus import Corpus
from speechlm.tokenizers.prosody.f0 import F0Config, SpeakerNorm, extract_f0

FORMAT = "speechlm-prosody-tokenizer"
VERSION = 1
FRAME_RATE = 50.0  # the unit frame grid (20 ms) that pitch and style features are pooled on


@dataclass(frozen=True)
class Track:
    """One utterance's F0 and whatever else a tokenizer computed from its audio."""

    id: str
    speaker: str
    f0: np.ndarray                 # (frames,) Hz at F0Config.hop_s, 0 = unvoiced
    extra: Any = None              # ``extra(samples, f0)`` of :func:`read_tracks`


def read_tracks(corpus_dir: str | Path, split: str, config: F0Config, max_hours: float | None = None,
                extra: Callable[[np.ndarray, np.ndarray], Any] | None = None,
                show_progress: bool = True) -> list[Track]:
    """F0 tracks of up to ``max_hours`` of ``split`` (all of it when None), plus ``extra(samples,
    f0)`` per utterance, so that the audio is decoded once and never kept."""
    corpus = Corpus(corpus_dir)
    total = sum(corpus.table(split, ["duration"]).column("duration").to_pylist())
    if max_hours is not None:
        total = min(total, max_hours * 3600)
    tracks: list[Track] = []
    seconds = 0.0
    with progress_bar(f"F0 of {split}", total=total, unit="s", enabled=show_progress) as advance:
        for utt in corpus.utterances(split):
            if seconds >= total:
                break
            samples = utt.samples()
            f0 = extract_f0(samples, config)
            tracks.append(Track(utt.id, utt.speaker, f0, extra(samples, f0) if extra else None))
            seconds += utt.duration
            advance(utt.duration)
    if not tracks:
        raise DataError(f"{corpus.root}: split {split!r} has no utterances to fit a prosody tokenizer")
    return tracks


def fit_speaker_norm(tracks: list[Track]) -> SpeakerNorm:
    return SpeakerNorm.fit([(t.speaker, t.f0) for t in tracks])


def save_common(tmp: Path, config: dict, norm: SpeakerNorm | None) -> None:
    """Write ``config.json`` (with format/version) and ``speakers.json`` into a temp dir."""
    (tmp / "config.json").write_text(json.dumps({"format": FORMAT, "version": VERSION, **config},
                                                indent=2))
    if norm is not None:
        (tmp / "speakers.json").write_text(json.dumps(norm.to_dict(), indent=2))


def read_config(path: str | Path) -> dict:
    """``config.json`` of a prosody tokenizer directory, or CheckpointError naming the path."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: prosody tokenizer directory not found")
    config = read_json(path / "config.json", CheckpointError,
                       "missing (no config.json: not a prosody tokenizer directory)")
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path / 'config.json'}: not a speechlm prosody tokenizer "
                              f"(format != {FORMAT!r})")
    return config


def read_speaker_norm(path: Path) -> SpeakerNorm:
    data = read_json(path / "speakers.json", CheckpointError,
                     "missing (the speaker log-F0 means are needed to normalise F0)")
    try:
        return SpeakerNorm.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path / 'speakers.json'}: corrupt speaker statistics ({err})") from None


def load_tensors(path: Path, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """Arrays ``keys`` from a safetensors file; ``what`` says what the file holds for the error."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing ({what})")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors file ({err})") from None
    missing = [k for k in keys if k not in tensors]
    if missing:
        raise CheckpointError(f"{path}: lacks {', '.join(missing)} ({what})")
    return tensors
