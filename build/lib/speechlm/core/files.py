"""Small files every artefact carries: atomic writes, JSON reading, artefact directories.

``atomic_file`` / ``atomic_write`` write next to the target and ``os.replace`` it, so a reader (or
a crash) sees the old file or the new one, never half of one. ``read_artefact_dir`` is the one
place that turns a missing directory, config or weights file of a saved tokenizer, vocoder or
model into a one-line ``CheckpointError`` naming the path.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from speechlm.core.errors import CheckpointError, DataError, SpeechLMError


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; when the block succeeds it replaces ``path``.

    >>> with atomic_file("out.parquet") as tmp:      # doctest: +SKIP
    ...     pq.write_table(table, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: str | Path, error: type[SpeechLMError] = DataError,
              missing: str = "file not found") -> dict:
    """The JSON object in ``path``; ``error`` naming the file if it is absent, corrupt or not an
    object. ``missing`` says what an absent file means (e.g. "not a tokenizer directory")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: corrupt JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_artefact_dir(path: str | Path, what: str, config: str = "config.json",
                      weights: Sequence[str] = (), fmt: str | None = None) -> dict:
    """The config of a saved artefact directory (``what``: "tokenizer", "vocoder", "model").

    Raises ``CheckpointError`` naming the path when the directory, its ``config`` file or one of
    the ``weights`` files is missing, the config is not a JSON object, or its ``format`` is not
    ``fmt``. Loaders call this first and then read their own fields.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: {what} directory not found")
    config_path = path / config
    data = read_json(config_path, CheckpointError, f"missing (no {config}: not a {what} directory)")
    if fmt is not None and data.get("format") != fmt:
        raise CheckpointError(f"{config_path}: not a speechlm {what} (format "
                              f"{data.get('format')!r}, expected {fmt!r})")
    for name in weights:
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name}: missing ({what} weights)")
    return data
