"""Training checkpoints: a model directory plus everything an exact resume needs.

``checkpoint-<step>/`` = the model directory (HF weights, vocabulary, ``speechlm.json``) +
``trainer_state.pt`` (optimizer, scheduler, python/numpy/torch RNG; loaded with
``weights_only=True``) + ``trainer_state.json`` (step, data cursor) + ``manifest.json`` (size and
sha256 of every file). Written into a temp directory and renamed (``core.checkpoint.atomic_dir``),
pruned to the newest ``keep_last``. ``--resume`` takes the newest checkpoint that verifies against
its manifest and loads, naming every damaged one it skips (:func:`resume_from`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speechlm.core.checkpoint import (MANIFEST, atomic_dir, checkpoint_name, list_checkpoints,
                                      prune_checkpoints, verify_manifest, write_manifest)
from speechlm.core.errors import CheckpointError
from speechlm.core.files import atomic_file
from speechlm.core.seed import rng_state, set_rng_state
from speechlm.lm.model import TOKENIZER_FILE, write_model_dir
from speechlm.lm.modeldir import META_FILE, ModelMeta
from speechlm.lm.vocab import SpeechVocab

log = logging.getLogger(__name__)

STATE_PT = "trainer_state.pt"
STATE_JSON = "trainer_state.json"
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "speech_vocab.json",
               TOKENIZER_FILE, META_FILE)


@dataclass
class ModelSpec:
    """What a saved model directory records besides the weights."""

    vocab: SpeechVocab
    meta: ModelMeta
    text_tokenizer_file: Path | None = None

    def write(self, out_dir: Path, model: torch.nn.Module) -> Path:
        return write_model_dir(out_dir, model, self.vocab, self.meta, self.text_tokenizer_file)


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, spec: ModelSpec,
                    optimizer: torch.optim.Optimizer, scheduler: Any, cursor: int,
                    keep_last: int) -> Path:
    """Atomic checkpoint: model dir + optimizer/scheduler/RNG + data position."""
    final = run_dir / checkpoint_name(step)
    with atomic_dir(final) as tmp:
        spec.write(tmp, model)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, tmp / STATE_PT)
        (tmp / STATE_JSON).write_text(json.dumps({"step": step, "cursor": cursor}), encoding="utf-8")
        write_manifest(tmp)
    prune_checkpoints(run_dir, keep_last)
    return final


def read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """Everything a resume needs from ``ckpt``, after checking it against its manifest;
    CheckpointError naming the checkpoint and the damage when a file is missing, changed or
    unreadable."""
    from safetensors.torch import load_file

    if not (ckpt / MANIFEST).is_file():
        log.warning("%s has no %s (saved by an older speechlm): not verified", ckpt, MANIFEST)
    problems = verify_manifest(ckpt) if (ckpt / MANIFEST).is_file() else []
    if problems:
        raise CheckpointError(f"{ckpt.name} is damaged: {'; '.join(problems)}")
    try:
        return {"vocab": SpeechVocab.load(ckpt),
                "state": torch.load(ckpt / STATE_PT, weights_only=True, map_location="cpu"),
                "info": json.loads((ckpt / STATE_JSON).read_text(encoding="utf-8")),
                "weights": load_file(ckpt / "model.safetensors")}
    except (OSError, ValueError, RuntimeError, KeyError, CheckpointError) as err:
        raise CheckpointError(f"{ckpt.name} is damaged: cannot read it ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None


def resume_from(run_dir: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest intact checkpoint of ``run_dir`` and its contents (``(None, None)`` when there is
    none at all); damaged ones are skipped with a warning, and CheckpointError lists them when no
    checkpoint is intact."""
    damaged = []
    for ckpt in reversed(list_checkpoints(run_dir)):
        try:
            contents = read_checkpoint(ckpt)
        except CheckpointError as err:
            log.warning("--resume: %s; trying the previous checkpoint", err)
            damaged.append(str(err))
            continue
        if damaged:
            log.warning("--resume: resuming from %s (skipped %d damaged checkpoint(s))", ckpt.name,
                        len(damaged))
        return ckpt, contents
    if damaged:
        raise CheckpointError(f"{run_dir}: no intact checkpoint to resume from ({'; '.join(damaged)})")
    return None, None


def load_checkpoint(ckpt: Path, contents: dict[str, Any], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    vocab: SpeechVocab) -> tuple[int, int]:
    """Restore weights, optimizer, scheduler, RNG from :func:`read_checkpoint` contents; returns
    ``(step, cursor)``."""
    saved_vocab = contents["vocab"]
    if saved_vocab.to_dict() != vocab.to_dict():
        raise CheckpointError(f"{ckpt}: vocabulary ({saved_vocab.size} tokens, families "
                              f"{saved_vocab.names}) differs from this run's data ({vocab.size} "
                              f"tokens, {vocab.names}); was the tokenizer retrained?")
    missing, unexpected = model.load_state_dict(contents["weights"], strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ()) | {"lm_head.weight"}
    missing = [k for k in missing if k not in tied]  # tied to the embeddings
    if missing or unexpected:
        raise CheckpointError(f"{ckpt}: weights do not match the model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    optimizer.load_state_dict(contents["state"]["optimizer"])
    scheduler.load_state_dict(contents["state"]["scheduler"])
    set_rng_state(contents["state"]["rng"])
    return int(contents["info"]["step"]), int(contents["info"]["cursor"])


def publish_final(run_dir: Path, ckpt: Path | None) -> None:
    """Copy a model dir's files (last checkpoint or best/) to the run dir, each atomically and
    ``speechlm.json`` last."""
    if ckpt is None:
        return
    for name in MODEL_FILES:
        src = ckpt / name
        if src.is_file():
            with atomic_file(run_dir / name) as tmp:
                shutil.copyfile(src, tmp)


def truncate_metrics(path: Path, keep_until: int) -> None:
    """Drop records after step ``keep_until`` (left by a killed run) before appending again."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= keep_until]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def debug_kill(step: int) -> None:
    """Tests: ``SPEECHLM_KILL_AT_STEP=N`` SIGKILLs this process right after step N."""
    at = os.environ.get("SPEECHLM_KILL_AT_STEP")
    if at is not None and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)
