"""Tokenize many FLAC clips in worker processes, each loading the tokenizer once.

Whisper's encoder (CTranslate2) and the k-means lookup run on one core per clip, so the corpus
(`speechlm tokenize --workers`) and the spoken benchmarks split their clips over processes.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from speechlm.core.threads import torch_threads
from speechlm.data.audio import read_audio


@lru_cache(maxsize=1)
def _worker_tokenizer(tokenizer_dir: str):
    from speechlm.tokenizers import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def _encode(tokenizer, flac: bytes, dedup: bool) -> tuple[np.ndarray, np.ndarray]:
    units, durations = tokenizer.encode(read_audio(flac), dedup=dedup)
    return np.asarray(units, dtype=np.int64), np.asarray(durations, dtype=np.int64)


def _encode_chunk(task: tuple[str, bool, int | None, list[bytes]]):
    """(units, durations) of FLAC clips with the tokenizer at a path; runs in a worker process."""
    tokenizer_dir, dedup, threads, clips = task
    tokenizer = _worker_tokenizer(tokenizer_dir)
    with torch_threads(threads):
        return [_encode(tokenizer, flac, dedup) for flac in clips]


def encode_clips(clips: list[bytes], tokenizer, tokenizer_dir: str | None, dedup: bool,
                 threads: int | None, workers: int,
                 chunk_size: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(units, durations) of each clip, in order: in ``workers`` processes when the tokenizer has
    a directory to load from, else with ``tokenizer`` in this process. Same result either way."""
    if workers > 1 and tokenizer_dir is not None and len(clips) > chunk_size:
        tasks = [(str(tokenizer_dir), dedup, threads, clips[k:k + chunk_size])
                 for k in range(0, len(clips), chunk_size)]
        context = mp.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        with context.Pool(workers) as pool:
            for encoded in pool.imap(_encode_chunk, tasks):
                yield from encoded
        return
    if tokenizer is None:
        tokenizer = _worker_tokenizer(str(tokenizer_dir))
    with torch_threads(threads):
        for flac in clips:
            yield _encode(tokenizer, flac, dedup)
