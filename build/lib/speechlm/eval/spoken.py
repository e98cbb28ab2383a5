"""Spoken benchmarks: espeak audio with held-out voices, and units per tokenizer, both cached.

Pair ``i`` is spoken by held-out voice ``i % len(voices)``; good, bad and the shared prefix use the
same voice, so only the words differ. Audio is cached per (benchmark fingerprint, voices) and
units per (audio cache, tokenizer, dedup), so models that share a tokenizer share the work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict
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

    With ``corpus_dir`` they are recomputed from the corpus' synth parameters; otherwise from the
    defaults of ``speechlm corpus synth`` (12 training + 3 held-out voices, seed 0).
    """
    from speechlm.data.synth import pick_voices

    if corpus_dir is not None:
        params = read_json(Path(corpus_dir) / "meta.json").get("params", {})
        if "voices" in params and params.get("heldout_voices"):  # a synthesized corpus
            voices, heldout = int(params["voices"]), int(params["heldout_voices"])
            seed = int(params.get("seed", seed))
    if heldout < 1:
        raise DataError("spoken benchmarks need at least one held-out voice")
    return pick_voices(voices, heldout, seed)[1]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _voice_key(voices: list[Voice]) -> str:
    return hashlib.sha1(json.dumps([asdict(v) for v in voices]).encode()).hexdigest()[:8]


def _atomic_write(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


# Bump when the way audio is rendered changes, so stale cached audio is never reused.
RENDERER = "render2"


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

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{_safe(benchmark.name)}-{benchmark.version}-{benchmark.fingerprint()}-" \
                   f"{_voice_key(voices)}-c{chunk_size}.{RENDERER}.audio.parquet"
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


def tokenizer_key(tokenizer_dir: str | Path) -> str:
    """Identifies a tokenizer directory by its path and file sizes/mtimes."""
    root = Path(tokenizer_dir).resolve()
    digest = hashlib.sha1(str(root).encode())
    for f in sorted(root.rglob("*")):
        if f.is_file():
            st = f.stat()
            digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:10]


def _join(prefix: np.ndarray, body: np.ndarray, dedup: bool) -> np.ndarray:
    if prefix.size and body.size and dedup and prefix[-1] == body[0]:
        body = body[1:]  # the run continues across the boundary: one unit, as in one utterance
    return np.concatenate([prefix, body]).astype(np.int64)


def encode_benchmark(benchmark: Benchmark, audio: pa.Table, tokenizer, tok_key: str,
                     dedup: bool = True, cache_dir: str | Path | None = None,
                     memo: dict | None = None, show_progress: bool = False,
                     threads: int | None = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Units of the good and bad items (prefix units + ending units). Prefix and ending are
    encoded separately, so a context shared by both items gets identical units."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / f"{_safe(benchmark.name)}-{benchmark.version}-{benchmark.fingerprint()}-" \
                   f"units-{tok_key}-{'dedup' if dedup else 'frames'}.parquet"
    if path.is_file():
        table = pq.read_table(path).to_pydict()
        return ([np.asarray(u, dtype=np.int64) for u in table["good"]],
                [np.asarray(u, dtype=np.int64) for u in table["bad"]])
    memo = {} if memo is None else memo

    def encode(flac: bytes) -> np.ndarray:
        if not flac:
            return np.zeros(0, dtype=np.int64)
        key = hashlib.sha1(flac).hexdigest()
        if key not in memo:
            units, _ = tokenizer.encode(read_audio(flac), dedup=dedup)
            memo[key] = np.asarray(units, dtype=np.int64)
        return memo[key]

    columns = audio.to_pydict()
    good, bad = [], []
    with progress_bar(f"tokenizing {benchmark.name}", total=len(columns["id"]), unit="pairs",
                      enabled=show_progress) as advance, torch_threads(threads):
        for prefix, g, b in zip(columns["prefix"], columns["good"], columns["bad"]):
            p = encode(prefix)
            good.append(_join(p, encode(g), dedup))
            bad.append(_join(p, encode(b), dedup))
            advance()
    int_list = pa.list_(pa.int32())
    _atomic_write(pa.table({"id": columns["id"],
                            "good": pa.array([u.tolist() for u in good], int_list),
                            "bad": pa.array([u.tolist() for u in bad], int_list)}), path)
    return good, bad
