"""Multi-stream token datasets: units plus prosody streams, one integer column per stream.

The directory is a token dataset (:class:`speechlm.tokenizers.tokens.TokenDataset` reads its
units) whose parquet rows carry extra columns and whose ``meta.json`` lists the streams::

    streams: [{name, column, vocab_size, frame_rate, tokenizer, durations_column | aligned}]

* ``unit-prosody``: ``duration_tokens`` and ``f0_tokens`` (aligned with ``units``: same length),
  plus ``f0_hz`` (measured mean F0 per unit, 0 = unvoiced) and ``logf0_offset`` (what decoding
  adds back).
* ``pitch-vq``: ``pitch_tokens`` + ``pitch_durations`` (run-length, 12.5 Hz steps), ``pitch_offset``.
* ``style``: ``style_tokens`` + ``style_durations`` (run-length, windows of ``window_s``).

Streams at other rates than the units keep their own durations, so a recipe can interleave them
by time (SpiRit-LM) or expand them to the unit grid.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from speechlm.core.checkpoint import atomic_dir
from speechlm.core.errors import ConfigError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.data.corpus import SPLITS, Corpus
from speechlm.tokenizers.prosody.f0 import extract_f0
from speechlm.tokenizers.semantic.kmeans import dedup as run_length
from speechlm.tokenizers.tokens import SCHEMA, TokenRecord

log = logging.getLogger(__name__)

_INTS, _FLOATS = pa.list_(pa.int32()), pa.list_(pa.float32())
_COLUMNS = {
    "unit-prosody": [("duration_tokens", _INTS), ("f0_tokens", _INTS), ("f0_hz", _FLOATS),
                     ("logf0_offset", pa.float64())],
    "pitch-vq": [("pitch_tokens", _INTS), ("pitch_durations", _INTS), ("pitch_offset", pa.float64())],
    "style": [("style_tokens", _INTS), ("style_durations", _INTS)],
}


def _streams(tok) -> list[dict]:
    where = {"tokenizer": str(tok.path)}
    if tok.kind == "unit-prosody":
        return [{"name": name, "column": f"{name}_tokens", "vocab_size": size,
                 "frame_rate": tok.frame_rate, "aligned": True, **where}
                for name, size in tok.vocab_sizes.items()]
    name = "pitch" if tok.kind == "pitch-vq" else "style"
    return [{"name": name, "column": f"{name}_tokens", "durations_column": f"{name}_durations",
             "vocab_size": tok.vocab_size, "frame_rate": tok.frame_rate, **where}]


def _encode(tok, samples: np.ndarray, f0: np.ndarray, units: np.ndarray, durations: np.ndarray,
            speaker: str) -> dict:
    if tok.kind == "unit-prosody":
        p = tok.encode_f0(f0, units, durations, speaker)
        return {"duration_tokens": p.duration_tokens.tolist(), "f0_tokens": p.f0_tokens.tolist(),
                "f0_hz": p.f0_hz.astype(np.float32).tolist(), "logf0_offset": p.offset}
    if tok.kind == "pitch-vq":
        codes, offset = tok.encode_f0(f0, speaker)
        tokens, runs = run_length(codes)
        return {"pitch_tokens": tokens.tolist(), "pitch_durations": runs.tolist(),
                "pitch_offset": offset}
    tokens, runs = run_length(tok.encode_f0(samples, f0))
    return {"style_tokens": tokens.tolist(), "style_durations": runs.tolist()}


@with_torch_threads
def encode_corpus(corpus_dir: str | Path, out_dir: str | Path, prosody_dirs: list[str | Path],
                  units_dir: str | Path | None = None, splits: tuple[str, ...] = SPLITS,
                  threads: int = 1, show_progress: bool = True) -> Path:
    """Write a token dataset with units and the streams of each prosody tokenizer (one per kind).

    ``units_dir`` defaults to the unit tokenizer a ``unit-prosody`` tokenizer was fitted with.
    """
    from speechlm.tokenizers.prosody import load_prosody_tokenizer
    from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

    toks = [load_prosody_tokenizer(p) for p in prosody_dirs]
    kinds = [t.kind for t in toks]
    if not toks or len(set(kinds)) != len(kinds):
        raise ConfigError(f"give one prosody tokenizer per kind (got kinds {kinds})")
    if units_dir is None:
        units_dir = next((t.unit_tokenizer for t in toks if t.kind == "unit-prosody"), None)
        if units_dir is None:
            raise ConfigError("no unit tokenizer: pass units_dir (--units) for pitch/style streams")
    units_tok = load_tokenizer(units_dir)
    for tok in toks:
        if tok.kind == "unit-prosody" and tok.frame_rate != units_tok.frame_rate:
            raise ConfigError(f"{tok.path}: fitted on {tok.frame_rate} Hz units, but {units_dir} "
                              f"gives {units_tok.frame_rate} Hz units")
    schema = pa.schema(list(SCHEMA) + [pa.field(n, t) for k in kinds for n, t in _COLUMNS[k]])
    corpus = Corpus(corpus_dir)
    rate = units_tok.frame_rate
    counts = {}
    with atomic_dir(out_dir) as tmp:
        (tmp / "data").mkdir()
        for split in splits:
            n = corpus.table(split, ["id"]).num_rows
            if n == 0:
                continue
            rows = []
            with progress_bar(f"prosody streams {split}", total=n, unit="utts",
                              enabled=show_progress) as advance:
                for utt in corpus.utterances(split):
                    samples = utt.samples()
                    units, durations = units_tok.encode(samples)
                    words = [(w, int(np.floor(s * rate)), int(np.floor(e * rate)))
                             for w, s, e in utt.words]
                    row = TokenRecord(utt.id, utt.speaker, split, units, durations, utt.text,
                                      words).to_dict()
                    f0s = {}
                    for tok in toks:
                        key = tuple(tok.f0_config.to_dict().values())
                        f0 = f0s.setdefault(key, extract_f0(samples, tok.f0_config))
                        row.update(_encode(tok, samples, f0, units, durations, utt.speaker))
                    rows.append(row)
                    advance()
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp / "data" / f"{split}.parquet")
            counts[split] = len(rows)
        streams = [{"name": "units", "column": "units", "vocab_size": units_tok.vocab_size,
                    "frame_rate": rate, "tokenizer": str(Path(units_dir).resolve())}]
        streams += [s for tok in toks for s in _streams(tok)]
        meta = {"tokenizer": str(Path(units_dir).resolve()), "vocab_size": units_tok.vocab_size,
                "frame_rate": rate, "dedup": True, "features": units_tok.features_name,
                "corpus": str(corpus.root.resolve()), "utterances": counts, "streams": streams}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    log.info("wrote prosody streams %s into %s", counts, out_dir)
    return Path(out_dir)
