"""Import real corpora (LibriSpeech layout, or audio files with same-name .txt transcripts).

Bad inputs never stop an import: each one is skipped and written to ``DIR/rejects.jsonl`` as
``{"path": ..., "reason": ...}``, so nothing is silently lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechlm.core.errors import AudioError, DataError
from speechlm.core.progress import progress_bar
from speechlm.data.audio import SAMPLE_RATE, encode_flac, read_audio
from speechlm.data.corpus import Corpus, CorpusWriter, Utterance

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
FORMATS = ("librispeech", "wavtxt")


@dataclass(frozen=True)
class Candidate:
    """An audio file found in the source tree, with its transcript if one was found."""

    path: Path
    utt_id: str
    speaker: str
    text: str | None
    missing_reason: str = "no transcript"


@dataclass
class ImportResult:
    corpus: Corpus | None
    imported: int
    rejects: list[dict]


def _librispeech(src: Path) -> Iterator[Candidate]:
    transcripts: dict[str, str] = {}
    for trans in sorted(src.rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                utt_id, _, text = line.strip().partition(" ")
                transcripts[utt_id] = text.strip()
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        speaker = path.stem.split("-")[0] if "-" in path.stem else path.parent.parent.name
        yield Candidate(path, path.stem, speaker, transcripts.get(path.stem),
                        "no line for this id in any *.trans.txt")


def _wavtxt(src: Path) -> Iterator[Candidate]:
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        rel = path.relative_to(src)
        speaker = rel.parts[0] if len(rel.parts) > 1 else "unknown"
        transcript = path.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8", errors="replace").strip() \
            if transcript.is_file() else None
        utt_id = "-".join(rel.with_suffix("").parts)
        yield Candidate(path, utt_id, speaker, text, f"no transcript file {transcript.name}")


def _split(i: int, heldout: bool, valid_every: int, test_every: int) -> str:
    if heldout:
        return "heldout"
    if i % valid_every == valid_every - 1:
        return "valid"
    return "test" if i % test_every == test_every // 2 else "train"


def import_corpus(src: str | Path, out_dir: str | Path, fmt: str, max_seconds: float = 60.0,
                  heldout_speakers: int = 0, valid_every: int = 20, test_every: int = 20,
                  seed: int = 0, show_progress: bool = True) -> ImportResult:
    """Convert ``src`` to a speechlm corpus at ``out_dir`` (mono, 16 kHz, FLAC in parquet).

    Speakers in ``heldout`` aside, file ``i`` (in sorted order) goes to ``valid`` when
    ``i % valid_every == valid_every - 1``, else to ``test`` when ``i % test_every ==
    test_every // 2``, else to ``train``.
    """
    src, out_dir = Path(src), Path(out_dir)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    if fmt not in FORMATS:
        raise DataError(f"unknown import format {fmt!r}; expected one of {FORMATS}")
    candidates = list(_librispeech(src) if fmt == "librispeech" else _wavtxt(src))
    if not candidates:
        raise DataError(f"{src}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    speakers = sorted({c.speaker for c in candidates})
    rng = np.random.default_rng(seed)
    heldout = set(rng.permutation(speakers)[:heldout_speakers].tolist()) if heldout_speakers else set()
    meta = {"name": out_dir.name, "generator": f"import:{fmt}",
            "params": {"src": str(src), "max_seconds": max_seconds, "seed": seed},
            "heldout_speakers": sorted(heldout)}
    writer = CorpusWriter(out_dir, meta)
    rejects: list[dict] = []
    imported = 0
    with progress_bar("importing", total=len(candidates), unit="files",
                      enabled=show_progress) as advance:
        for i, cand in enumerate(candidates):
            advance()
            if cand.text is None or not cand.text:
                reason = cand.missing_reason if cand.text is None else "empty transcript"
                rejects.append({"path": str(cand.path), "reason": reason})
                continue
            try:
                samples = read_audio(cand.path, max_seconds=max_seconds)
            except AudioError as err:
                rejects.append({"path": str(cand.path), "reason": str(err).split(": ", 1)[-1]})
                continue
            split = _split(i, cand.speaker in heldout, valid_every, test_every)
            writer.add(Utterance(id=cand.utt_id, speaker=cand.speaker, text=cand.text,
                                 sample_rate=SAMPLE_RATE, duration=samples.size / SAMPLE_RATE,
                                 audio=encode_flac(samples), split=split))
            imported += 1
    with open(out_dir / "rejects.jsonl", "w") as f:
        for row in rejects:
            f.write(json.dumps(row) + "\n")
    for row in rejects:
        log.warning("skipped %s: %s", row["path"], row["reason"])
    corpus = writer.close() if imported else None
    return ImportResult(corpus=corpus, imported=imported, rejects=rejects)
