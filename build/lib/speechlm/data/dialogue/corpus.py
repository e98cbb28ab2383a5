"""Dialogue corpus directories: one record per conversation in parquet shards.

Layout::

    DIR/meta.json                       {"kind": "dialogue", version, params, voices, stats}
    DIR/dialogues/<split>-00000.parquet dialogue records (two FLAC channels each)

Splits: ``train``, ``valid`` and ``test`` (train voices; valid and test dialogues use questions
never used in train), ``heldout`` (voices never used in the other splits, evaluation questions).
Shards live under ``dialogues/`` rather than ``data/``, so single-channel readers
(:class:`speechlm.data.corpus.Corpus`) refuse a dialogue corpus instead of misreading it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from speechlm.core.errors import DataError
from speechlm.core.files import read_json
from speechlm.data.dialogue.record import DIALOGUE_SPLITS, Dialogue
from speechlm.data.dialogue.stats import corpus_stats

DIALOGUE_CORPUS_VERSION = 1
SHARDS = "dialogues"

_SPAN = pa.struct([("label", pa.string()), ("start", pa.float64()), ("end", pa.float64())])
_EVENT = pa.struct([("kind", pa.string()), ("label", pa.string()), ("channel", pa.int8()),
                    ("start", pa.float64()), ("end", pa.float64()), ("speaker", pa.string()),
                    ("text", pa.string())])
SCHEMA = pa.schema([
    ("id", pa.string()),
    ("split", pa.string()),
    ("sample_rate", pa.int32()),
    ("duration", pa.float64()),
    ("speakers", pa.list_(pa.string())),   # [user, system]
    ("channels", pa.list_(pa.binary())),   # [user FLAC, system FLAC], equal length
    ("events", pa.list_(_EVENT)),
    ("words", pa.list_(pa.list_(_SPAN))),  # per channel
])


def is_dialogue_corpus(root: str | Path) -> bool:
    return (Path(root) / SHARDS).is_dir()


class DialogueWriter:
    """Validates dialogues and writes them as parquet shards (each atomically), then meta.json."""

    def __init__(self, out_dir: str | Path, meta: dict, shard_size: int = 64) -> None:
        self.out_dir = Path(out_dir)
        self.meta = {**meta, "kind": "dialogue"}
        self.shard_size = shard_size
        self._buffers: dict[str, list[Dialogue]] = {s: [] for s in DIALOGUE_SPLITS}
        self._shard_index = dict.fromkeys(DIALOGUE_SPLITS, 0)
        self._ids: set[str] = set()
        (self.out_dir / SHARDS).mkdir(parents=True, exist_ok=True)
        for stale in (self.out_dir / SHARDS).glob("*.parquet"):
            stale.unlink()

    def add(self, dialogue: Dialogue) -> None:
        dialogue.validate(str(self.out_dir))
        if dialogue.id in self._ids:
            raise DataError(f"{self.out_dir}: duplicate dialogue id {dialogue.id!r}")
        self._ids.add(dialogue.id)
        self._buffers[dialogue.split].append(dialogue)
        if len(self._buffers[dialogue.split]) >= self.shard_size:
            self._flush(dialogue.split)

    def _flush(self, split: str) -> None:
        if not self._buffers[split]:
            return
        table = pa.Table.from_pylist([d.to_dict() for d in self._buffers[split]], schema=SCHEMA)
        path = self.out_dir / SHARDS / f"{split}-{self._shard_index[split]:05d}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self._shard_index[split] += 1
        self._buffers[split] = []

    def close(self) -> DialogueCorpus:
        for split in DIALOGUE_SPLITS:
            self._flush(split)
        if not self._ids:
            raise DataError(f"{self.out_dir}: no dialogues were written")
        corpus = DialogueCorpus(self.out_dir, _meta=self.meta)
        self.meta.update(version=DIALOGUE_CORPUS_VERSION, stats=corpus.stats())
        tmp = self.out_dir / "meta.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2))
        os.replace(tmp, self.out_dir / "meta.json")
        return DialogueCorpus(self.out_dir)


class DialogueCorpus:
    """Read access to a dialogue corpus directory; ``stats()`` reads no audio.

    >>> for dialogue in DialogueCorpus("runs/dialogues").dialogues("heldout"):  # doctest: +SKIP
    ...     user, system = dialogue.samples()
    """

    def __init__(self, root: str | Path, _meta: dict | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dialogue corpus directory not found")
        self.shards = sorted((self.root / SHARDS).glob("*.parquet"))
        if not self.shards:
            raise DataError(f"{self.root}: no parquet shards under {SHARDS}/ (not a dialogue "
                            f"corpus)")
        self.meta = _meta if _meta is not None else read_json(
            self.root / "meta.json", missing="missing (corpus was not finished writing)")
        if self.meta.get("kind") != "dialogue":
            raise DataError(f"{self.root / 'meta.json'}: kind is {self.meta.get('kind')!r}, "
                            f"expected 'dialogue'")

    def _shards_for(self, split: str | None) -> list[Path]:
        if split is not None and split not in DIALOGUE_SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {DIALOGUE_SPLITS}")
        return [p for p in self.shards if split is None or p.name.startswith(f"{split}-")]

    def _read(self, shard: Path, columns: list[str] | None = None) -> pa.Table:
        try:
            table = pq.read_table(shard, columns=columns)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{shard}: cannot read shard ({err})") from None
        missing = set(columns or SCHEMA.names) - set(table.column_names)
        if missing:
            raise DataError(f"{shard}: missing column(s) {sorted(missing)}")
        return table

    def _dialogues(self, split: str | None,
                   with_audio: bool = True) -> Iterator[tuple[Path, Dialogue]]:
        """(shard, dialogue) with its metadata validated; without audio, channels are empty."""
        columns = None if with_audio else [c for c in SCHEMA.names if c != "channels"]
        for shard in self._shards_for(split):
            for record in self._read(shard, columns).to_pylist():
                if not with_audio:
                    record["channels"] = [b"", b""]
                try:
                    dialogue = Dialogue.from_dict(record)
                except (KeyError, TypeError, ValueError) as err:
                    raise DataError(f"{shard}: dialogue {record.get('id')!r}: malformed record "
                                    f"({type(err).__name__}: {err})") from None
                dialogue.validate(str(shard))
                yield shard, dialogue

    def dialogues(self, split: str | None = None) -> Iterator[Dialogue]:
        """Every dialogue of ``split`` (default: all), metadata checked as it is read."""
        return (dialogue for _, dialogue in self._dialogues(split))

    def __iter__(self) -> Iterator[Dialogue]:
        return self.dialogues()

    def __len__(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shards)

    def stats(self) -> dict:
        """Counts, durations and event statistics per split, from the metadata columns only."""
        return corpus_stats([d for _, d in self._dialogues(None, with_audio=False)])

    def validate(self) -> dict:
        """Check every record, its metadata against its audio, and return the stats."""
        for shard, dialogue in self._dialogues(None):
            try:
                audio = dialogue.samples()
            except DataError as err:  # name the shard and record, not "<bytes>"
                raise DataError(f"{shard}: dialogue {dialogue.id!r}: {err}") from None
            dialogue.validate(str(shard), audio=audio)
        return self.stats()
