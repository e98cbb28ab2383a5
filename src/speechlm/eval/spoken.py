"""Spoken benchmarks: espeak audio with held-out voices, and units per tokenizer, both cached.

Pair ``i`` is spoken by held-out voice ``i % len(voices)``; good, bad and the shared prefix use the
same voice, so only the words differ. Both caches are keyed by everything their content depends
on, so a change anywhere is a miss, never a stale hit: audio by the benchmark's content
fingerprint (its texts, hence its seed, and its version), the voices, the chunk size, the renderer
version and the espeak-ng version; units by a hash of the audio itself, the tokenizer's content
fingerprint, dedup and the units format version. Models that share a tokenizer share the work.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import multiprocessing as mp
import os
import re
from collections.abc import Iterator
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from speechlm.core.errors import DataError
from speechlm.core.files import read_json
from speechlm.core.progress import progress_bar
from speechlm.core.threads import torch_threads
from speechlm.data.audio import encode_flac, read_audio
from speechlm.data.tts import Voice
from speechlm.eval.benchmarks import Benchmark

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SPEECHLM_CACHE/benchmarks`` or ``~/.cache/speechlm/benchmarks``."""
    root = os.environ.get("SPEECHLM_CACHE") or Path.home() / ".cache" / "speechlm"
    return Path(root) / "benchmarks"


def heldout_voices(corpus_dir: str | Path | None = None, seed: int = 0, voices: int = 12,
                   heldout: int = 3) -> list[Voice]:
    """The voices a training corpus kept out of training (its ``heldout`` split).

    With ``corpus_dir``: the names its ``meta.json`` records under ``heldout_voices`` (what the
    corpus was made with, even if the voice catalogue changed since), with the prosody its synth
    parameters give them (espeak defaults for a name they do not give). A corpus that records no
    held-out voices (an imported one, or none held out) gets the defaults of ``speechlm corpus
    synth`` (12 training + 3 held-out voices, seed 0), which no synthesized corpus trains on.
    """
    from speechlm.data.synth import pick_voices

    names: list[str] = []
    if corpus_dir is not None:
        meta_path = Path(corpus_dir) / "meta.json"
        meta = read_json(meta_path)
        params = meta.get("params", {})
        names = [str(n) for n in meta.get("heldout_voices") or []]
        if "voices" in params and params.get("heldout_voices"):  # a synthesized corpus
            voices, heldout = int(params["voices"]), int(params["heldout_voices"])
            seed = int(params.get("seed", seed))
        if not names:
            log.warning("%s records no held-out voices: spoken benchmarks use the default ones",
                        meta_path)
    if heldout < 1:
        raise DataError("spoken benchmarks need at least one held-out voice")
    computed = pick_voices(voices, heldout, seed)[1]
    if not names:
        return computed
    by_name = {v.name: v for v in computed}
    return [by_name.get(name, Voice(name)) for name in names]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _atomic_write(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


# Bump when the way audio is rendered (RENDERER) or units are encoded (UNITS_FORMAT) changes, so
# stale cached items are never reused.
RENDERER = "render2"
UNITS_FORMAT = "units2"


def audio_cache_path(benchmark: Benchmark, voices: list[Voice], cache_dir: str | Path | None,
                     chunk_size: int) -> Path:
    """Where :func:`render_audio` caches this benchmark spoken by these voices."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _digest(benchmark.fingerprint(), [asdict(v) for v in voices], chunk_size, RENDERER,
                  importlib.metadata.version("espeakng-loader"))
    return cache / f"{_safe(benchmark.name)}-{benchmark.version}-{key}.audio.parquet"


def _speak_chunk(requests: list[tuple[str, Voice]]) -> list[bytes]:
    """FLAC bytes for each (text or ``[[phonemes]]``, voice); runs in a fresh process."""
    from speechlm.data.tts import Espeak

    espeak = Espeak()
    return [encode_flac(espeak.synthesize(text, voice, phoneme_input=text.startswith("[[")).samples)
            for text, voice in requests]


def render_audio(benchmark: Benchmark, voices: list[Voice], cache_dir: str | Path | None = None,
                 show_progress: bool = False, workers: int = 2, chunk_size: int = 32) -> pa.Table:
    """Columns ``id, voice, prefix, good, bad`` (FLAC bytes; ``prefix`` empty when none).

    Each distinct (text, voice) is spoken once, in chunks that each run in a fresh process
    (:func:`speechlm.data.tts.in_fresh_processes`), so the audio depends only on the benchmark, the
    voices and ``chunk_size``, not on ``workers`` or on what this process synthesized before.
    """
    from speechlm.data.tts import in_fresh_processes

    path = audio_cache_path(benchmark, voices, cache_dir, chunk_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        return pq.read_table(path)
    index: dict[tuple[str, Voice], int] = {}
    for i, pair in enumerate(benchmark.pairs):
        voice = voices[i % len(voices)]
        for text in (pair.prefix, pair.speech("good"), pair.speech("bad")):
            if text:
                index.setdefault((text, voice), len(index))
    requests = list(index)
    chunks = [requests[k:k + chunk_size] for k in range(0, len(requests), chunk_size)]
    audio: list[bytes] = []
    with progress_bar(f"speaking {benchmark.name}", total=len(requests), unit="clips",
                      enabled=show_progress) as advance:
        for spoken in in_fresh_processes(_speak_chunk, chunks, workers):
            audio.extend(spoken)
            advance(len(spoken))
    rows = {"id": [], "voice": [], "prefix": [], "good": [], "bad": []}
    for i, pair in enumerate(benchmark.pairs):
        voice = voices[i % len(voices)]
        rows["id"].append(pair.id)
        rows["voice"].append(voice.name)
        rows["prefix"].append(audio[index[(pair.prefix, voice)]] if pair.prefix else b"")
        rows["good"].append(audio[index[(pair.speech("good"), voice)]])
        rows["bad"].append(audio[index[(pair.speech("bad"), voice)]])
    table = pa.table(rows)
    _atomic_write(table, path)
    log.info("cached %s audio in %s", benchmark.name, path)
    return table


def tokenizer_fingerprint(tokenizer_dir: str | Path) -> str:
    """Content hash of a tokenizer directory (file names and bytes): equal fingerprints mean the
    same tokenizer wherever it lies, and retraining it in place changes the fingerprint."""
    root = Path(tokenizer_dir)
    digest = hashlib.sha1()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(root).as_posix()}\0".encode())
        with open(f, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:12]


def audio_fingerprint(audio: pa.Table) -> str:
    """Content hash of a rendered benchmark (ids and every clip's FLAC bytes)."""
    digest = hashlib.sha1()
    for name in ("id", "prefix", "good", "bad"):
        for value in audio.column(name).to_pylist():
            data = value.encode() if isinstance(value, str) else value
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()[:12]


def units_cache_path(benchmark: Benchmark, audio: pa.Table, tokenizer_fp: str, dedup: bool,
                     cache_dir: str | Path | None) -> Path:
    """Where :func:`encode_benchmark` caches the units of ``audio`` under this tokenizer."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _digest(audio_fingerprint(audio), tokenizer_fp, dedup, UNITS_FORMAT)
    return cache / f"{_safe(benchmark.name)}-{benchmark.version}-{key}.units.parquet"


def _join(prefix: np.ndarray, body: np.ndarray, dedup: bool) -> np.ndarray:
    if prefix.size and body.size and dedup and prefix[-1] == body[0]:
        body = body[1:]  # the run continues across the boundary: one unit, as in one utterance
    return np.concatenate([prefix, body]).astype(np.int64)


@lru_cache(maxsize=1)
def _worker_tokenizer(tokenizer_dir: str):
    from speechlm.tokenizers import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def _encode_chunk(task: tuple[str, bool, int | None, list[bytes]]) -> list[np.ndarray]:
    """Units of FLAC clips with the tokenizer at a path; runs in a worker process, which loads
    the tokenizer once."""
    tokenizer_dir, dedup, threads, clips = task
    tokenizer = _worker_tokenizer(tokenizer_dir)
    with torch_threads(threads):
        return [np.asarray(tokenizer.encode(read_audio(flac), dedup=dedup)[0], dtype=np.int64)
                for flac in clips]


def _encode_clips(clips: list[bytes], tokenizer, tokenizer_dir: str | None, dedup: bool,
                  threads: int | None, workers: int, chunk_size: int = 32) -> Iterator[np.ndarray]:
    """Units of each clip, in order: in ``workers`` processes when the tokenizer has a directory
    to load from (tokenizing is most of a cold benchmark run), else in this process."""
    if workers > 1 and tokenizer_dir is not None and len(clips) > chunk_size:
        tasks = [(str(tokenizer_dir), dedup, threads, clips[k:k + chunk_size])
                 for k in range(0, len(clips), chunk_size)]
        context = mp.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        with context.Pool(workers) as pool:
            for units in pool.imap(_encode_chunk, tasks):
                yield from units
        return
    with torch_threads(threads):
        for flac in clips:
            yield np.asarray(tokenizer.encode(read_audio(flac), dedup=dedup)[0], dtype=np.int64)


def encode_benchmark(benchmark: Benchmark, audio: pa.Table, tokenizer, tokenizer_fp: str | None,
                     dedup: bool = True, cache_dir: str | Path | None = None,
                     memo: dict | None = None, show_progress: bool = False,
                     threads: int | None = 1, tokenizer_dir: str | Path | None = None,
                     workers: int = 1) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Units of the good and bad items (prefix units + ending units) and, per pair, how many of
    them are the shared prefix (the context that scoring conditions on but does not score).

    Prefix and ending are encoded separately, so a context shared by both items gets identical
    units; each distinct clip is encoded once (``memo``, keyed by the FLAC bytes, can carry over
    between benchmarks), in ``workers`` processes when ``tokenizer_dir`` is given. Cached on
    disk when the tokenizer has a fingerprint (``tokenizer_fp``)."""
    path = None
    if tokenizer_fp is not None:
        path = units_cache_path(benchmark, audio, tokenizer_fp, dedup, cache_dir)
        if path.is_file():
            table = pq.read_table(path).to_pydict()
            return ([np.asarray(u, dtype=np.int64) for u in table["good"]],
                    [np.asarray(u, dtype=np.int64) for u in table["bad"]], table["context"])
    memo = {} if memo is None else memo
    columns = audio.to_pydict()
    todo: dict[str, bytes] = {}
    for name in ("prefix", "good", "bad"):
        for flac in columns[name]:
            key = hashlib.sha1(flac).hexdigest()
            if flac and key not in memo:
                todo[key] = flac
    with progress_bar(f"tokenizing {benchmark.name}", total=len(todo), unit="clips",
                      enabled=show_progress) as advance:
        for key, units in zip(todo, _encode_clips(list(todo.values()), tokenizer, tokenizer_dir,
                                                  dedup, threads, workers)):
            memo[key] = units
            advance()

    def units(flac: bytes) -> np.ndarray:
        return memo[hashlib.sha1(flac).hexdigest()] if flac else np.zeros(0, dtype=np.int64)

    good, bad, context = [], [], []
    for prefix, g, b in zip(columns["prefix"], columns["good"], columns["bad"]):
        p = units(prefix)
        good.append(_join(p, units(g), dedup))
        bad.append(_join(p, units(b), dedup))
        context.append(int(p.size))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        int_list = pa.list_(pa.int32())
        _atomic_write(pa.table({"id": columns["id"],
                                "good": pa.array([u.tolist() for u in good], int_list),
                                "bad": pa.array([u.tolist() for u in bad], int_list),
                                "context": pa.array(context, pa.int32())}), path)
    return good, bad, context
