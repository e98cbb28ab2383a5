"""The spoken corpus every later stage reads: typed utterance records in parquet shards.

Layout of a corpus directory::

    DIR/meta.json                  name, version, how it was made, stats
    DIR/data/<split>-00000.parquet utterance records (audio as FLAC bytes)
    DIR/rejects.jsonl              (importers) every skipped input file with its reason

Splits: ``train``; ``valid`` (training voices or speakers, other utterances: choose checkpoints
and settings on it); ``test`` (the same, disjoint from both: report figures on it, once the
choices are made); ``heldout`` (voices or speakers never in training: the held-out-voice
benchmarks and tokenizer metrics). Corpora written before format version 2 have no ``test``
split; they still load, with a warning, and their ``test`` split is empty.

Shards are plain parquet, so ``datasets.load_dataset("parquet", data_files=...)`` reads them too
(decode the ``audio`` bytes with :func:`speechlm.data.audio.read_audio`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from speechlm.core.errors import DataError
from speechlm.core.files import read_json
from speechlm.data.audio import SAMPLE_RATE, read_audio

log = logging.getLogger(__name__)

CORPUS_VERSION = 2  # 2: the ``test`` split
SPLITS = ("train", "valid", "test", "heldout")

Alignment = list[tuple[str, float, float]]

_SPAN = pa.list_(pa.struct([("label", pa.string()), ("start", pa.float64()), ("end", pa.float64())]))
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("speaker", pa.string()),
    ("text", pa.string()),
    ("sample_rate", pa.int32()),
    ("duration", pa.float64()),
    ("audio", pa.binary()),
    ("words", _SPAN),
    ("phones", _SPAN),
    ("split", pa.string()),
    ("style", pa.string()),  # speaking style label or null; shards written before it lack it
])


@dataclass(frozen=True)
class Utterance:
    """One spoken utterance with its transcript and (optional) word/phone alignments in seconds.

    >>> u = Utterance("u1", "spk", "hi", 16000, 0.5, b"", [("hi", 0.1, 0.4)], [], "train")
    >>> Utterance.from_dict(u.to_dict()) == u
    True
    """

    id: str
    speaker: str
    text: str
    sample_rate: int
    duration: float
    audio: bytes
    words: Alignment = field(default_factory=list)
    phones: Alignment = field(default_factory=list)
    split: str = "train"
    style: str | None = None  # speaking style label (e.g. "excited"), None when not labelled

    def to_dict(self) -> dict:
        record = asdict(self)
        for key in ("words", "phones"):
            record[key] = [{"label": a, "start": s, "end": e} for a, s, e in record[key]]
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Utterance:
        spans = {key: [(d["label"], float(d["start"]), float(d["end"])) for d in record.get(key) or []]
                 for key in ("words", "phones")}
        return cls(id=record["id"], speaker=record["speaker"], text=record["text"],
                   sample_rate=int(record["sample_rate"]), duration=float(record["duration"]),
                   audio=record["audio"], split=record["split"], style=record.get("style"),
                   **spans)

    def validate(self) -> None:
        """Check fields and that alignments are monotone and inside the utterance."""
        where = f"utterance {self.id!r}"
        if not self.id or not self.speaker:
            raise DataError(f"{where}: empty id or speaker")
        if self.style is not None and not self.style.strip():
            raise DataError(f"{where}: empty style label (use null for unlabelled)")
        if self.split not in SPLITS:
            raise DataError(f"{where}: split {self.split!r} is not one of {SPLITS}")
        if self.sample_rate != SAMPLE_RATE or self.duration <= 0:
            raise DataError(f"{where}: sample_rate={self.sample_rate}, duration={self.duration}")
        for name, spans in (("words", self.words), ("phones", self.phones)):
            previous_end = 0.0
            for label, start, end in spans:
                if not (previous_end - 1e-6 <= start <= end <= self.duration + 1e-6):
                    raise DataError(f"{where}: {name} span {label!r} [{start:.3f}, {end:.3f}] is not "
                                    f"monotone or not inside 0..{self.duration:.3f} s")
                previous_end = end

    def samples(self) -> np.ndarray:
        """Decoded mono float32 audio at 16 kHz."""
        return read_audio(self.audio)


class CorpusWriter:
    """Validates utterances and writes them as parquet shards, each one atomically."""

    def __init__(self, out_dir: str | Path, meta: dict, shard_size: int = 400) -> None:
        self.out_dir = Path(out_dir)
        self.meta = dict(meta)
        self.shard_size = shard_size
        self._buffers: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
        self._shard_index: dict[str, int] = {s: 0 for s in SPLITS}
        self._ids: set[str] = set()
        (self.out_dir / "data").mkdir(parents=True, exist_ok=True)
        for stale in (self.out_dir / "data").glob("*.parquet"):
            stale.unlink()

    def add(self, utt: Utterance) -> None:
        utt.validate()
        if utt.id in self._ids:
            raise DataError(f"duplicate utterance id {utt.id!r}")
        self._ids.add(utt.id)
        self._buffers[utt.split].append(utt)
        if len(self._buffers[utt.split]) >= self.shard_size:
            self._flush(utt.split)

    def _flush(self, split: str) -> None:
        rows = self._buffers[split]
        if not rows:
            return
        table = pa.Table.from_pylist([u.to_dict() for u in rows], schema=SCHEMA)
        path = self.out_dir / "data" / f"{split}-{self._shard_index[split]:05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self._shard_index[split] += 1
        self._buffers[split] = []

    def close(self) -> Corpus:
        for split in SPLITS:
            self._flush(split)
        if not self._ids:
            raise DataError(f"{self.out_dir}: no utterances were written")
        corpus = Corpus(self.out_dir, _meta=self.meta)
        self.meta.update(version=CORPUS_VERSION, stats=corpus.stats())
        tmp = self.out_dir / "meta.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2))
        os.replace(tmp, self.out_dir / "meta.json")
        return Corpus(self.out_dir)


class Corpus:
    """Read access to a corpus directory; metadata columns are read without decoding audio."""

    def __init__(self, root: str | Path, _meta: dict | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: corpus directory not found")
        self.shards = sorted((self.root / "data").glob("*.parquet"))
        if not self.shards:
            raise DataError(f"{self.root}: no parquet shards under data/ (not a speechlm corpus)")
        self.meta = _meta if _meta is not None else read_json(
            self.root / "meta.json", missing="missing (corpus was not finished writing)")
        if _meta is None and int(self.meta.get("version", 1)) < 2:
            log.warning("%s: corpus format version %s has no 'test' split (figures meant for "
                        "'test' have no data; re-create the corpus to get one)", self.root,
                        self.meta.get("version", 1))

    def _shards_for(self, split: str | None) -> list[Path]:
        if split is not None and split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
        return [p for p in self.shards if split is None or p.name.startswith(f"{split}-")]

    def table(self, split: str | None = None, columns: list[str] | None = None) -> pa.Table:
        shards = self._shards_for(split)
        if not shards:
            return SCHEMA.empty_table().select(columns or SCHEMA.names)
        try:
            return pa.concat_tables(pq.read_table(p, columns=columns) for p in shards)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{self.root}: cannot read shard ({err})") from None

    def __iter__(self) -> Iterator[Utterance]:
        return self.utterances()

    def utterances(self, split: str | None = None) -> Iterator[Utterance]:
        for shard in self._shards_for(split):
            for record in pq.read_table(shard).to_pylist():
                yield Utterance.from_dict(record)

    def __len__(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shards)

    def stats(self) -> dict:
        meta = self.table(columns=["speaker", "duration", "split"]).to_pydict()
        durations = np.asarray(meta["duration"], dtype=np.float64)
        splits = {s: {"utterances": int(sum(x == s for x in meta["split"])),
                      "speakers": len({spk for spk, x in zip(meta["speaker"], meta["split"]) if x == s}),
                      "hours": float(durations[[x == s for x in meta["split"]]].sum() / 3600)}
                  for s in SPLITS}
        return {"utterances": int(durations.size), "hours": float(durations.sum() / 3600),
                "speakers": len(set(meta["speaker"])),
                "mean_duration_s": float(durations.mean()) if durations.size else 0.0,
                "splits": splits}

    def validate(self) -> dict:
        """Check every record (schema, alignments, audio decodes) and return the stats."""
        for utt in self:
            utt.validate()
            samples = utt.samples()
            if abs(samples.size / SAMPLE_RATE - utt.duration) > 0.01:
                raise DataError(f"{self.root}: utterance {utt.id!r} duration {utt.duration:.3f} s "
                                f"does not match its audio ({samples.size / SAMPLE_RATE:.3f} s)")
        return self.stats()
