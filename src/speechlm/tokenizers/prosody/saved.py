"""What a model directory records of the prosody tokenizers its streams came from, and the checks
that a tokenizer or dataset given later is the same one.

``describe(tok)`` is saved in the model's ``speechlm.json`` (``prosody: {kind: ...}``), so every
checkpoint carries its stream configuration (which streams, their vocabulary sizes), a digest of
the tokenizer's files and, for the pGSLM ``unit`` tokenizer, the F0 / duration bin edges and the
speaker means themselves: :func:`restore` rebuilds that tokenizer from the model directory alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from speechlm.core.errors import CheckpointError
from speechlm.tokenizers.prosody.bins import Bins
from speechlm.tokenizers.prosody.f0 import F0Config, SpeakerNorm


def stream_sizes(tok) -> dict[str, int]:
    """``{stream name: vocabulary size}`` of the dataset streams a prosody tokenizer makes."""
    if tok.kind == "unit-prosody":
        return dict(tok.vocab_sizes)
    return {"pitch" if tok.kind == "pitch-vq" else "style": int(tok.vocab_size)}


def digest(path: str | Path) -> str:
    """sha256 over a tokenizer directory's files except ``config.json`` (which holds timings)."""
    sha = hashlib.sha256()
    for file in sorted(Path(path).iterdir()):
        if file.is_file() and file.name != "config.json":
            sha.update(file.name.encode())
            sha.update(file.read_bytes())
    return sha.hexdigest()


def describe(tok) -> dict:
    """JSON-ready record of ``tok`` for a model directory."""
    out = {"kind": tok.kind, "path": str(tok.path), "streams": stream_sizes(tok),
           "frame_rate": float(tok.frame_rate), "f0": tok.f0_config.to_dict(),
           "digest": digest(tok.path)}
    if tok.kind == "unit-prosody":
        out.update(interpolate=tok.interpolate, unit_frame_rate=float(tok.frame_rate),
                   speakers=tok.norm.to_dict(),
                   bins={"f0_edges": tok.f0_bins.edges.tolist(),
                         "f0_centers": tok.f0_bins.centers.tolist(),
                         "duration_edges": tok.duration.edges.tolist(),
                         "duration_centers": tok.duration.centers.tolist()})
    return out


def restore(entry: dict, where: str):
    """The ``unit-prosody`` tokenizer a model saved (bin edges + speaker means), without its
    directory; CheckpointError naming ``where`` when the record lacks them."""
    from speechlm.tokenizers.prosody.unit_prosody import UnitProsodyTokenizer

    try:
        bins = entry["bins"]
        f0_bins = Bins(np.asarray(bins["f0_edges"]), np.asarray(bins["f0_centers"]))
        duration = Bins(np.asarray(bins["duration_edges"]), np.asarray(bins["duration_centers"]))
        tok = UnitProsodyTokenizer(f0_bins, duration, SpeakerNorm.from_dict(entry["speakers"]),
                                   F0Config(**entry["f0"]), float(entry["unit_frame_rate"]),
                                   bool(entry["interpolate"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: the saved unit-prosody tokenizer lacks its F0/duration "
                              f"bin edges or speaker means ({type(err).__name__}: {err})") from None
    if stream_sizes(tok) != entry.get("streams"):
        raise CheckpointError(f"{where}: saved bin edges give streams {stream_sizes(tok)}, the "
                              f"record says {entry.get('streams')}")
    return tok


def check_same(entry: dict, tok, where: str) -> None:
    """CheckpointError when ``tok`` is not the tokenizer a model recorded in ``entry``."""
    sizes, mine = stream_sizes(tok), entry.get("streams")
    if tok.kind != entry.get("kind") or sizes != mine:
        raise CheckpointError(f"model/prosody tokenizer mismatch: {where} reads {entry.get('kind')} "
                              f"streams {mine}, but {tok.path} is {tok.kind} with streams {sizes}")
    if tok.path is not None and digest(tok.path) != entry.get("digest"):
        raise CheckpointError(f"model/prosody tokenizer mismatch: {where} was trained with the "
                              f"{tok.kind} tokenizer {entry.get('path')}, but {tok.path} has other "
                              "bins/weights (a retrained tokenizer): use the model's own")
