"""Token datasets: a corpus turned into unit sequences, the input of every speech LM.

Layout::

    UNITS/meta.json              tokenizer (absolute path), vocab_size, frame_rate, dedup, counts
    UNITS/data/<split>.parquet   id, speaker, split, units list<int32>, durations list<int32>,
                                 text, words list<struct<label, start, end>>

Word ``start``/``end`` are in frames of the tokenizer's frame grid *before* deduplication
(``frame = floor(seconds * frame_rate)``); ``np.cumsum(durations)`` maps units to that grid.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
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
class TokenRecord:
    """One tokenized utterance. Fields are readable as attributes or ``record["units"]``."""

    id: str
    speaker: str
    split: str
    units: np.ndarray        # (U,) int64
    durations: np.ndarray    # (U,) int64 frames per unit
    text: str
    words: list[tuple[str, int, int]] = field(default_factory=list)  # (label, start, end) frames

    def __getitem__(self, key: str):
        return getattr(self, key)

    def to_dict(self) -> dict:
        return {"id": self.id, "speaker": self.speaker, "split": self.split,
                "units": self.units.astype(np.int32).tolist(),
                "durations": self.durations.astype(np.int32).tolist(), "text": self.text,
                "words": [{"label": w, "start": s, "end": e} for w, s, e in self.words]}


class TokenDataset:
    """Read a token dataset directory.

    >>> ds = TokenDataset("runs/units")                       # doctest: +SKIP
    >>> ds.vocab_size, ds.frame_rate, ds.splits               # doctest: +SKIP
    (100, 50.0, ['heldout', 'train', 'valid'])
    >>> rec = ds.split("train")[0]; rec.units, rec["durations"]  # doctest: +SKIP

    ``split(name)`` returns a list of :class:`TokenRecord`; ``table(name)`` the raw arrow table.
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
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{meta_path}: corrupt token dataset metadata ({err})") from None

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
        """Only the ``units`` column of a split, as int64 arrays (what LM training reads)."""
        table = self.table(name, columns=["units"])
        return [np.asarray(u, dtype=np.int64) for u in table.column("units").to_pylist()]

    def split(self, name: str) -> list[TokenRecord]:
        return [TokenRecord(r["id"], r["speaker"], r["split"], np.asarray(r["units"], dtype=np.int64),
                            np.asarray(r["durations"], dtype=np.int64), r["text"],
                            [(w["label"], w["start"], w["end"]) for w in r["words"] or []])
                for r in self.table(name).to_pylist()]


@with_torch_threads
def tokenize_corpus(tokenizer_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path,
                    dedup: bool = True, splits: tuple[str, ...] = SPLITS, threads: int = 1,
                    show_progress: bool = True) -> Path:
    """Encode every utterance of ``corpus_dir`` into a token dataset at ``out_dir``."""
    from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    corpus = Corpus(corpus_dir)
    rate = tok.frame_rate
    counts = {}
    with atomic_dir(out_dir) as tmp:
        (tmp / "data").mkdir()
        for split in splits:
            n = corpus.table(split, ["id"]).num_rows
            if n == 0:
                continue
            rows = []
            with progress_bar(f"tokenizing {split}", total=n, unit="utts",
                              enabled=show_progress) as advance:
                for utt in corpus.utterances(split):
                    units, durations = tok.encode(utt.samples(), dedup=dedup)
                    words = [(w, int(np.floor(s * rate)), int(np.floor(e * rate))) for w, s, e in utt.words]
                    rows.append(TokenRecord(utt.id, utt.speaker, split, units, durations,
                                            utt.text, words).to_dict())
                    advance()
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp / "data" / f"{split}.parquet")
            counts[split] = len(rows)
        meta = {"tokenizer": str(Path(tokenizer_dir).resolve()), "vocab_size": tok.vocab_size,
                "frame_rate": rate, "dedup": dedup, "features": tok.features_name,
                "corpus": str(Path(corpus_dir).resolve()), "utterances": counts}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    log.info("tokenized %s into %s", counts, out_dir)
    return Path(out_dir)
