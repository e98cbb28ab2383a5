"""Codec token datasets: a corpus encoded by a codec, with phonemes and (optionally) semantic units.

Layout::

    CODECTOK/meta.json             codec (absolute path), n_codebooks, codebook_size, frame_rate,
                                   phonemes (the inventory, in id order), tokenizer + n_units
                                   (semantic units, optional), counts per split
    CODECTOK/data/<split>.parquet  id, speaker, text, codes list<list<int32>> (K x T),
                                   phonemes list<int32>, units list<int32> (T values, or empty)

Phonemes come from the text through :class:`speechlm.data.phonemes.Phonemizer` (the same function
TTS uses at inference), not from the alignments: training and inference then see the same
phonemizer output. Semantic units are the tokenizer's frames
without deduplication, cut or padded to the codec's T (both grids are 50 Hz).

The phoneme inventory is every phoneme of every split's text (held-out splits hold out voices, not
the phoneme set); TTS rejects a phoneme outside it with a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import DataError
from speechlm.core.files import atomic_write_json, read_json
from speechlm.core.progress import progress_bar
from speechlm.data.audio import read_audio
from speechlm.data.corpus import SPLITS, Corpus
from speechlm.data.phonemes import Phonemizer


FORMAT = "speechlm-codec-tokens"
SCHEMA = pa.schema([("id", pa.string()), ("speaker", pa.string()), ("text", pa.string()),
                    ("codes", pa.list_(pa.list_(pa.int32()))), ("phonemes", pa.list_(pa.int32())),
                    ("units", pa.list_(pa.int32()))])


@dataclass(frozen=True)
class CodecRecord:
    """One utterance: ``codes`` (K, T) int64, ``phonemes`` (P,) ids, ``units`` (T,) or None."""

    id: str
    speaker: str
    text: str
    codes: np.ndarray
    phonemes: np.ndarray
    units: np.ndarray | None = None


def build_codec_dataset(corpus_dir: str | Path, codec_dir: str | Path, out_dir: str | Path,
                        tokenizer_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Encode every split of a corpus with the codec (+ phonemes, + semantic units)."""
    from speechlm.tokenizers import load_tokenizer
    from speechlm.tokenizers.codec import load_codec

    corpus, codec = Corpus(corpus_dir), load_codec(codec_dir)
    tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir else None
    phonemizer = Phonemizer()
    rows: dict[str, list[dict]] = {}
    for split in SPLITS:
        utts = list(corpus.utterances(split))
        if not utts:
            continue
        out = rows[split] = []
        with progress_bar(f"codec tokens {split}", total=len(utts), unit="utts",
                          enabled=progress) as advance:
            for utt in utts:
                where = f"{corpus_dir}/{split}/{utt.id}"
                samples = read_audio(utt.audio)
                codes = codec.encode(samples, source=where)
                units = []
                if tokenizer is not None:
                    frames, _ = tokenizer.encode(samples, dedup=False)
                    frames = np.asarray(frames)[:codes.shape[1]]
                    units = np.pad(frames, (0, codes.shape[1] - frames.size), mode="edge").tolist()
                out.append({"id": utt.id, "speaker": utt.speaker, "text": utt.text,
                            "codes": codes.tolist(), "phones": phonemizer.phonemize(utt.text, where),
                            "units": units})
                advance(1)
    if "train" not in rows:
        raise DataError(f"{corpus_dir}: no train split to encode")
    inventory = sorted({p for split_rows in rows.values() for row in split_rows for p in row["phones"]})
    index = {p: i for i, p in enumerate(inventory)}
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "data").mkdir()
        for split, split_rows in rows.items():
            for row in split_rows:
                row["phonemes"] = [index[p] for p in row.pop("phones")]
            pq.write_table(pa.Table.from_pylist(split_rows, schema=SCHEMA), tmp / "data" / f"{split}.parquet")
        atomic_write_json(tmp / "meta.json", {
            "format": FORMAT, "codec": str(Path(codec_dir).resolve()), "n_codebooks": codec.n_codebooks,
            "codebook_size": codec.codebook_size, "frame_rate": codec.frame_rate,
            "phonemes": inventory, "language": phonemizer.language,
            "tokenizer": str(Path(tokenizer_dir).resolve()) if tokenizer_dir else None,
            "n_units": tokenizer.vocab_size if tokenizer else None,
            "counts": {split: len(r) for split, r in rows.items()}})
    return out_dir


class CodecDataset:
    """Reader of :func:`build_codec_dataset` output."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta = read_json(self.path / "meta.json", DataError, "missing (not a codec token dataset)")
        if self.meta.get("format") != FORMAT:
            raise DataError(f"{self.path}/meta.json: not a codec token dataset (format != {FORMAT!r})")

    @property
    def phonemes(self) -> list[str]:
        return list(self.meta["phonemes"])

    @property
    def has_units(self) -> bool:
        return bool(self.meta.get("n_units"))

    @property
    def splits(self) -> list[str]:
        return sorted(self.meta["counts"])

    def records(self, split: str) -> list[CodecRecord]:
        path = self.path / "data" / f"{split}.parquet"
        if not path.is_file():
            raise DataError(f"{path}: split {split!r} missing (have {self.splits})")
        out = []
        for row in pq.read_table(path).to_pylist():
            codes = np.asarray(row["codes"], dtype=np.int64)
            units = np.asarray(row["units"], dtype=np.int64) if row["units"] else None
            out.append(CodecRecord(row["id"], row["speaker"], row["text"], codes,
                                   np.asarray(row["phonemes"], dtype=np.int64), units))
        return out
