"""Token datasets: a corpus turned into token streams, the input of every speech LM.

Layout::

    TOKENS/meta.json              streams (below), tokenizer (absolute path), vocab_size and
                                  frame_rate (of stream 0), dedup, counts per split
    TOKENS/data/<split>.parquet   id, speaker, split, units list<int32>, durations list<int32>,
                                  text, words list<struct<label, start, end>>,
                                  one more list<int32> column per extra stream

A dataset has K aligned streams: ``meta.json["streams"]`` lists them in order, each with its
name (= its column and its vocabulary family), kind (``units``, ``prosody``, ``codec``,
``marker``), vocab_size, frame_rate, the tokenizer that made it (or how it was derived). Stream 0
is always ``units``; every other stream has one value per unit of its row. Datasets written before
``streams`` existed are K = 1 (``units`` only) and read the same way.

Word ``start``/``end`` are in frames of the tokenizer's frame grid *before* deduplication
(``frame = floor(seconds * frame_rate)``); ``np.cumsum(durations)`` maps units to that grid.
:func:`write_token_dataset` is the one writer (``tokenize_corpus``, derived streams and tests).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import DataError
from speechlm.core.files import read_json
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.data.corpus import SPLITS, Corpus

log = logging.getLogger(__name__)

_WORDS = pa.list_(pa.struct([("label", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))
SCHEMA = pa.schema([
    ("id", pa.string()), ("speaker", pa.string()), ("split", pa.string()),
    ("units", pa.list_(pa.int32())), ("durations", pa.list_(pa.int32())),
    ("text", pa.string()), ("words", _WORDS),
])


@dataclass(frozen=True)
class StreamSpec:
    """One token stream of a dataset (``meta.json["streams"]`` entry)."""

    name: str                    # parquet column and vocabulary family name
    kind: str                    # units | prosody | codec | marker
    vocab_size: int              # codes are 0..vocab_size-1
    frame_rate: float            # frames per second of the grid the codes live on
    tokenizer: str | None = None  # absolute path of the tokenizer that made it
    derived: str | None = None   # how a derived stream was computed from the others

    @classmethod
    def from_dict(cls, d: dict) -> StreamSpec:
        return cls(str(d["name"]), str(d["kind"]), int(d["vocab_size"]), float(d["frame_rate"]),
                   d.get("tokenizer"), d.get("derived"))


@dataclass(frozen=True)
class TokenRecord:
    """One tokenized utterance. Fields are readable as attributes or ``record["units"]``."""

    id: str
    speaker: str
    split: str
    units: np.ndarray        # (U,) int64
    durations: np.ndarray    # (U,) int64 frames per unit
    text: str
    words: list[tuple[str, int, int]] = field(default_factory=list)  # (label, start, end) frames
    streams: dict[str, np.ndarray] = field(default_factory=dict)     # extra streams, (U,) each

    def __getitem__(self, key: str):
        return self.streams[key] if key in self.streams else getattr(self, key)

    def codes(self, names: Sequence[str]) -> np.ndarray:
        """The named streams as one ``(K, U)`` int64 array."""
        return np.stack([np.asarray(self[n], dtype=np.int64) for n in names]) if names else \
            np.zeros((0, self.units.size), dtype=np.int64)

    def to_dict(self) -> dict:
        return {"id": self.id, "speaker": self.speaker, "split": self.split,
                "units": self.units.astype(np.int32).tolist(),
                "durations": self.durations.astype(np.int32).tolist(), "text": self.text,
                "words": [{"label": w, "start": s, "end": e} for w, s, e in self.words],
                **{k: np.asarray(v).astype(np.int32).tolist() for k, v in self.streams.items()}}


def _check_record(rec: TokenRecord, streams: Sequence[StreamSpec], where: str) -> None:
    """DataError naming the record when a stream is missing, misaligned or out of range."""
    for spec in streams:
        values = np.asarray(rec[spec.name]) if spec.name == "units" or spec.name in rec.streams \
            else None
        if values is None:
            raise DataError(f"{where}: utterance {rec.id!r} has no stream {spec.name!r}")
        if values.shape != rec.units.shape:
            raise DataError(f"{where}: utterance {rec.id!r} stream {spec.name!r} has "
                            f"{values.size} values for {rec.units.size} units")
        if values.size and (values.min() < 0 or values.max() >= spec.vocab_size):
            raise DataError(f"{where}: utterance {rec.id!r} stream {spec.name!r} has codes "
                            f"{values.min()}..{values.max()} outside 0..{spec.vocab_size - 1}")
    if rec.durations.shape != rec.units.shape:
        raise DataError(f"{where}: utterance {rec.id!r} has {rec.durations.size} durations for "
                        f"{rec.units.size} units")


def write_token_dataset(out_dir: str | Path, splits: Mapping[str, Sequence[TokenRecord]],
                        streams: Sequence[StreamSpec], meta: Mapping | None = None) -> Path:
    """Write a token dataset atomically: every record checked against ``streams`` first.

    ``streams[0]`` must be the ``units`` stream; ``meta`` adds provenance (``dedup``, corpus,
    features...). Empty splits are not written.
    """
    if not streams or streams[0].name != "units":
        raise DataError(f"{out_dir}: stream 0 must be 'units', got {[s.name for s in streams]}")
    schema = SCHEMA
    for spec in streams[1:]:
        schema = schema.append(pa.field(spec.name, pa.list_(pa.int32())))
    counts = {}
    with atomic_dir(out_dir) as tmp:
        (tmp / "data").mkdir()
        for split, records in splits.items():
            if not records:
                continue
            for rec in records:
                _check_record(rec, streams, f"{out_dir}/data/{split}.parquet")
            rows = [rec.to_dict() for rec in records]
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp / "data" / f"{split}.parquet")
            counts[split] = len(rows)
        units = streams[0]
        info = {"dedup": True, **(meta or {}), "tokenizer": units.tokenizer,
                "vocab_size": units.vocab_size, "frame_rate": units.frame_rate,
                "streams": [asdict(s) for s in streams], "utterances": counts}
        (tmp / "meta.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return Path(out_dir)


class TokenDataset:
    """Read a token dataset directory.

    >>> ds = TokenDataset("runs/units")                       # doctest: +SKIP
    >>> ds.vocab_size, ds.frame_rate, ds.splits, ds.stream_names  # doctest: +SKIP
    (100, 50.0, ['heldout', 'train', 'valid'], ['units'])
    >>> rec = ds.split("train")[0]; rec.units, rec["durations"]  # doctest: +SKIP
    >>> ds.streams("train")[0].shape                          # doctest: +SKIP
    (1, 87)

    ``split(name)`` returns a list of :class:`TokenRecord`; ``streams(name)`` the ``(K, T)`` code
    arrays LM training reads; ``table(name)`` the raw arrow table.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        self.meta = read_json(meta_path, missing="missing (not a token dataset)")
        try:
            self.vocab_size = int(self.meta["vocab_size"])
            self.frame_rate = float(self.meta["frame_rate"])
            self.tokenizer_dir = Path(self.meta["tokenizer"])
            self.dedup = bool(self.meta["dedup"])
            self.stream_specs = [StreamSpec.from_dict(s) for s in self.meta["streams"]] \
                if "streams" in self.meta else \
                [StreamSpec("units", "units", self.vocab_size, self.frame_rate, str(self.tokenizer_dir))]
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{meta_path}: corrupt token dataset metadata ({err})") from None
        if self.stream_specs[0].name != "units":
            raise DataError(f"{meta_path}: stream 0 must be 'units'")

    @property
    def stream_names(self) -> list[str]:
        return [s.name for s in self.stream_specs]

    def stream(self, name: str) -> StreamSpec:
        for spec in self.stream_specs:
            if spec.name == name:
                return spec
        raise DataError(f"{self.path}/meta.json: no stream {name!r} (streams: {self.stream_names})")

    @property
    def splits(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "data").glob("*.parquet"))

    def table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        path = self.path / "data" / f"{name}.parquet"
        if not path.is_file():
            raise DataError(f"{path}: split {name!r} not found (have {self.splits})")
        try:
            return pq.read_table(path, columns=columns)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{path}: cannot read ({err})") from None

    def units(self, name: str) -> list[np.ndarray]:
        """Only the ``units`` column of a split, as int64 arrays."""
        table = self.table(name, columns=["units"])
        return [np.asarray(u, dtype=np.int64) for u in table.column("units").to_pylist()]

    def streams(self, name: str, names: Sequence[str] | None = None) -> list[np.ndarray]:
        """The records of a split as ``(K, T)`` int64 code arrays, one row per stream (``names``,
        default all streams in order); what LM training reads."""
        names = list(names) if names is not None else self.stream_names
        for n in names:
            self.stream(n)
        columns = [self.table(name, columns=names).column(n).to_pylist() for n in names]
        out = []
        for i, rows in enumerate(zip(*columns)):
            lengths = {len(r) for r in rows}
            if len(lengths) > 1:
                raise DataError(f"{self.path}/data/{name}.parquet: row {i} has streams of "
                                f"lengths {[len(r) for r in rows]}; streams must be aligned")
            out.append(np.asarray(rows, dtype=np.int64).reshape(len(names), -1))
        return out

    def split(self, name: str) -> list[TokenRecord]:
        extra = self.stream_names[1:]
        return [TokenRecord(r["id"], r["speaker"], r["split"], np.asarray(r["units"], dtype=np.int64),
                            np.asarray(r["durations"], dtype=np.int64), r["text"],
                            [(w["label"], w["start"], w["end"]) for w in r["words"] or []],
                            {k: np.asarray(r[k], dtype=np.int64) for k in extra})
                for r in self.table(name).to_pylist()]


# ---------------------------------------------------------------- derived streams

DURATION_BINS = 6


def duration_bucket(rec: TokenRecord) -> np.ndarray:
    """log2 bucket of each unit's duration in frames: 1 -> 0, 2 -> 1, 3-4 -> 2, 5-8 -> 3, 9-16 -> 4,
    17+ -> 5 (pGSLM models durations as a stream of its own)."""
    frames = np.maximum(rec.durations, 1)
    return np.minimum(np.ceil(np.log2(frames)).astype(np.int64), DURATION_BINS - 1)


def word_start(rec: TokenRecord) -> np.ndarray:
    """1 where a word of the alignment starts within the unit, else 0."""
    ends = np.cumsum(rec.durations)
    starts = ends - rec.durations
    flags = np.zeros(rec.units.size, dtype=np.int64)
    for _, first, _ in rec.words:
        hit = np.nonzero((starts <= first) & (first < ends))[0]
        flags[hit[:1]] = 1
    return flags


# name -> (kind, vocab_size, what it is, function of a record)
DERIVED: dict[str, tuple[str, int, str, Callable[[TokenRecord], np.ndarray]]] = {
    "duration": ("prosody", DURATION_BINS, "log2 bucket of unit durations", duration_bucket),
    "word_start": ("marker", 2, "1 where a word starts (alignment)", word_start),
}


def derive_streams(units_dir: str | Path, out_dir: str | Path, names: Sequence[str]) -> Path:
    """A K = 1 + len(names) dataset at ``out_dir``: the units of ``units_dir`` plus streams computed
    from its durations and word alignments (:data:`DERIVED`), e.g. the K = 3 toy recipe."""
    unknown = sorted(set(names) - set(DERIVED))
    if unknown:
        raise DataError(f"derived streams {unknown} are not known (known: {sorted(DERIVED)})")
    src = TokenDataset(units_dir)
    units = src.stream_specs[0]
    specs = [units] + [StreamSpec(n, DERIVED[n][0], DERIVED[n][1], units.frame_rate,
                                  derived=DERIVED[n][2]) for n in names]
    splits = {split: [replace(rec, streams={n: DERIVED[n][3](rec) for n in names})
                      for rec in src.split(split)] for split in src.splits}
    meta = {k: v for k, v in src.meta.items()
            if k not in ("streams", "utterances", "tokenizer", "vocab_size", "frame_rate")}
    path = write_token_dataset(out_dir, splits, specs, {**meta, "derived_from": str(src.path.resolve())})
    log.info("derived streams %s from %s into %s", list(names), units_dir, out_dir)
    return path


@with_torch_threads
def tokenize_corpus(tokenizer_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path,
                    dedup: bool = True, splits: tuple[str, ...] = SPLITS, threads: int = 1,
                    show_progress: bool = True) -> Path:
    """Encode every utterance of ``corpus_dir`` into a token dataset at ``out_dir``."""
    from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    corpus = Corpus(corpus_dir)
    rate = tok.frame_rate
    records_by_split: dict[str, list[TokenRecord]] = {}
    for split in splits:
        n = corpus.table(split, ["id"]).num_rows
        if n == 0:
            continue
        records = []
        with progress_bar(f"tokenizing {split}", total=n, unit="utts", enabled=show_progress) as advance:
            for utt in corpus.utterances(split):
                units, durations = tok.encode(utt.samples(), dedup=dedup)
                words = [(w, int(np.floor(s * rate)), int(np.floor(e * rate))) for w, s, e in utt.words]
                records.append(TokenRecord(utt.id, utt.speaker, split, units, durations, utt.text, words))
                advance()
        records_by_split[split] = records
    spec = StreamSpec("units", "units", tok.vocab_size, rate, str(Path(tokenizer_dir).resolve()))
    write_token_dataset(out_dir, records_by_split, [spec], {"dedup": dedup, "features": tok.features_name,
                                                  "corpus": str(Path(corpus_dir).resolve())})
    log.info("tokenized %s into %s", {k: len(v) for k, v in records_by_split.items()}, out_dir)
    return Path(out_dir)
