"""Atomic checkpoint directories: write into a temp dir, fsync, then one ``rename``.

A crash (or SIGKILL) while saving leaves only a ``.tmp-*`` directory behind, which
:func:`list_checkpoints` ignores and the next save removes; the previous checkpoint is untouched.
Checkpoints are named ``checkpoint-<step:08d>`` inside a run directory; keep-last-N prunes older ones.

A saved directory can record a checksum manifest (``manifest.json``: size and sha256 of every
file), written last; :func:`verify_manifest` lists what no longer matches (a file truncated or
changed after saving), so a resume can skip a damaged checkpoint and say why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint-(\d{8})$")


def _fsync_tree(path: Path) -> None:
    for item in sorted(path.rglob("*")) + [path]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if item.is_dir() else 0)
        try:
            fd = os.open(item, flags)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temp dir next to ``final``; on success it replaces ``final`` in one rename.

    On any error the temp dir is removed and ``final`` (if it existed) is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():  # replace: move the old one aside first, so a crash keeps one of them
            old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``run_dir``, oldest first (temp dirs are never listed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def clean_temp(run_dir: str | Path) -> None:
    """Remove leftovers of interrupted saves."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.name.startswith((".tmp-checkpoint-", ".old-checkpoint-")):
                shutil.rmtree(p, ignore_errors=True)


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints; returns the deleted paths."""
    found = list_checkpoints(run_dir)
    doomed = found[:-keep_last] if keep_last > 0 else []
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
        log.info("pruned %s", p)
    return doomed


MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | Path) -> Path:
    """Record size and sha256 of every file under ``folder`` in ``folder/manifest.json``."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    path = folder / MANIFEST
    path.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1), encoding="utf-8")
    return path


def verify_manifest(folder: str | Path) -> list[str]:
    """Problems of ``folder`` against its manifest (empty = intact): missing, resized or changed
    files, or no readable manifest at all."""
    folder = Path(folder)
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{MANIFEST} missing or unreadable ({type(err).__name__})"]
    problems = []
    for name, expect in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} missing")
        elif path.stat().st_size != expect["bytes"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, {expect['bytes']} when saved")
        elif _sha256(path) != expect["sha256"]:
            problems.append(f"{name} changed since it was saved (sha256 mismatch)")
    return problems
