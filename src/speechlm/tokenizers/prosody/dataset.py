"""Multi-stream token datasets: units plus prosody streams, written by the core's one writer.

:func:`encode_corpus` gives a :class:`speechlm.tokenizers.tokens.TokenDataset` with K aligned
streams (one value per deduplicated unit), so every recipe reads it as ``(K, T)`` codes:

* ``unit-prosody`` tokenizer: ``duration`` and ``f0`` (pGSLM; already one token per unit).
* ``pitch-vq`` tokenizer: ``pitch``, the 12.5 Hz code whose step holds the unit's centre.
* ``style`` tokenizer: ``style``, the token of the window (about 1 s) that holds the unit's centre.

Pitch and style streams are put on the unit grid (rather than kept at their own rate) because the
multi-stream LM, its layouts and its sampler work on aligned streams; each such stream records in
``meta.json`` how it was aligned (``derived``) and which tokenizer made it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from speechlm.core.errors import ConfigError
from speechlm.core.progress import progress_bar
from speechlm.core.threads import with_torch_threads
from speechlm.data.corpus import SPLITS, Corpus
from speechlm.tokenizers.prosody.f0 import extract_f0
from speechlm.tokenizers.prosody.features import windows
from speechlm.tokenizers.tokens import StreamSpec, TokenRecord, write_token_dataset

log = logging.getLogger(__name__)


def stream_specs(tok, units_rate: float) -> list[StreamSpec]:
    """The dataset streams a prosody tokenizer contributes (in the order :func:`encode_streams`
    returns them), on the unit grid of ``units_rate`` Hz."""
    where = str(tok.path) if tok.path else None
    if tok.kind == "unit-prosody":
        return [StreamSpec(name, "prosody", size, units_rate, where)
                for name, size in tok.vocab_sizes.items()]
    name = "pitch" if tok.kind == "pitch-vq" else "style"
    return [StreamSpec(name, "prosody", tok.vocab_size, units_rate, where,
                       derived=f"{tok.kind} code ({tok.frame_rate:g} Hz) at each unit's centre")]


def unit_centres(durations: np.ndarray, units_rate: float) -> np.ndarray:
    """Time (s) of the middle of each unit, from its durations in frames of ``units_rate``."""
    ends = np.cumsum(np.asarray(durations, dtype=np.float64))
    return (ends - np.asarray(durations) / 2) / units_rate


def on_unit_grid(codes: np.ndarray, starts_s: np.ndarray, centres_s: np.ndarray) -> np.ndarray:
    """The code whose span (starting at ``starts_s``, ascending) holds each unit centre."""
    index = np.searchsorted(starts_s, centres_s, side="right") - 1
    return np.asarray(codes, dtype=np.int64)[np.clip(index, 0, len(codes) - 1)]


def encode_streams(tok, samples: np.ndarray, f0: np.ndarray, units: np.ndarray,
                   durations: np.ndarray, units_rate: float, speaker: str | None) -> dict[str, np.ndarray]:
    """``{stream name: (U,) codes}`` of one utterance for :func:`stream_specs`' streams."""
    if tok.kind == "unit-prosody":
        p = tok.encode_f0(f0, units, durations, speaker)
        return {"duration": p.duration_tokens, "f0": p.f0_tokens}
    centres = unit_centres(durations, units_rate)
    if tok.kind == "pitch-vq":
        codes, _ = tok.encode_f0(f0, speaker)
        return {"pitch": on_unit_grid(codes, np.arange(codes.size) / tok.frame_rate, centres)}
    codes = tok.encode_f0(samples, f0)
    per_window = max(1, int(round(tok.window_s / tok.f0_config.hop_s)))
    starts = np.array([a for a, _ in windows(f0.size, per_window)]) * tok.f0_config.hop_s
    return {"style": on_unit_grid(codes, starts, centres)}


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
    rate = units_tok.frame_rate
    for tok in toks:
        if tok.kind == "unit-prosody" and tok.frame_rate != rate:
            raise ConfigError(f"{tok.path}: fitted on {tok.frame_rate} Hz units, but {units_dir} "
                              f"gives {rate} Hz units")
    specs = [StreamSpec("units", "units", units_tok.vocab_size, rate, str(Path(units_dir).resolve()))]
    specs += [s for tok in toks for s in stream_specs(tok, rate)]
    corpus = Corpus(corpus_dir)
    records: dict[str, list[TokenRecord]] = {}
    for split in splits:
        n = corpus.table(split, ["id"]).num_rows
        if n == 0:
            continue
        rows = records.setdefault(split, [])
        with progress_bar(f"prosody streams {split}", total=n, unit="utts",
                          enabled=show_progress) as advance:
            for utt in corpus.utterances(split):
                samples = utt.samples()
                units, durations = units_tok.encode(samples)
                words = [(w, int(np.floor(s * rate)), int(np.floor(e * rate))) for w, s, e in utt.words]
                streams: dict[str, np.ndarray] = {}
                f0s: dict[tuple, np.ndarray] = {}
                for tok in toks:
                    key = tuple(tok.f0_config.to_dict().values())
                    f0 = f0s.setdefault(key, extract_f0(samples, tok.f0_config))
                    streams.update(encode_streams(tok, samples, f0, units, durations, rate, utt.speaker))
                rows.append(TokenRecord(utt.id, utt.speaker, split, units, durations, utt.text,
                                        words, streams))
                advance()
    path = write_token_dataset(out_dir, records, specs, {
        "features": units_tok.features_name, "corpus": str(corpus.root.resolve()),
        "prosody_tokenizers": {t.kind: str(t.path) for t in toks}})
    log.info("wrote prosody streams %s into %s", {k: len(v) for k, v in records.items()}, out_dir)
    return path


def parse_kinds(entries: list[str] | tuple[str, ...], source: str) -> dict[str, Path]:
    """``["unit=DIR", "style=DIR"]`` (a recipe's ``prosody_tokenizers``) -> ``{kind: DIR}``."""
    from speechlm.tokenizers.prosody.train import SCHEMAS

    out: dict[str, Path] = {}
    for entry in entries:
        kind, _, folder = entry.partition("=")
        kind = kind.strip()
        if kind not in SCHEMAS or not folder.strip() or kind in out:
            raise ConfigError(f"{source}: prosody_tokenizers entry {entry!r} must be KIND=DIR with "
                              f"one of {sorted(SCHEMAS)} used once")
        out[kind] = Path(folder.strip())
    return out


def build_prosody_dataset(corpus_dir: str | Path, unit_tokenizer: str | Path, out_dir: str | Path,
                          entries: list[str] | tuple[str, ...], source: str = "config",
                          show_progress: bool = True) -> Path:
    """Train each ``KIND=DIR`` prosody tokenizer that is missing (with that kind's default
    settings, on ``corpus_dir``), then write units + their streams to ``out_dir``."""
    from speechlm.core.config import build_config
    from speechlm.tokenizers.prosody.train import SCHEMAS, train_prosody_tokenizer

    kinds = parse_kinds(entries, source)
    for kind, folder in kinds.items():
        if not (folder / "config.json").is_file():
            log.warning("prosody tokenizer %s missing: training %s with its defaults", folder, kind)
            values = {"corpus": str(corpus_dir), "out": str(folder)}
            if kind == "unit":
                values["unit_tokenizer"] = str(unit_tokenizer)
            train_prosody_tokenizer(build_config(SCHEMAS[kind], values, source), show_progress)
    return encode_corpus(corpus_dir, out_dir, list(kinds.values()), unit_tokenizer,
                         show_progress=show_progress)
