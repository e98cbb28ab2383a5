"""What to serve, as recipes a worker process runs: ``--model DIR`` and ``--session MODULE:ATTR``.

Recipes are small picklable objects: each worker process builds its own factory from one, and the
server process never imports torch or loads weights.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

from speechlm.core.errors import ConfigError
from speechlm.serve.session import SessionFactory


@dataclass(frozen=True)
class ModelSource:
    """``speechlm serve --model``: a speech LM directory, its vocoder and how sessions behave
    (the arguments of :func:`speechlm.serve.models.load_model_factory`)."""

    model_dir: str
    vocoder_dir: str
    tokenizer_dir: str | None = None
    max_new_tokens: int = 150
    temperature: float = 0.8
    top_k: int | None = 50
    seed: int = 0
    frame_ms: int = 80
    end_of_turn_ms: int = 640
    listen_chunk_ms: int = 400
    response_chunk: int = 2

    def __call__(self) -> SessionFactory:
        from speechlm.generation.pipeline import Sampling
        from speechlm.serve.models import load_model_factory

        return load_model_factory(self.model_dir, self.vocoder_dir, self.tokenizer_dir,
                                  Sampling(self.max_new_tokens, self.temperature, self.top_k),
                                  self.seed, self.frame_ms, self.end_of_turn_ms,
                                  self.listen_chunk_ms, self.response_chunk)


def load_session_factory(spec: str) -> SessionFactory:
    """Import ``MODULE:ATTR``; ATTR is a factory or a zero-argument callable returning one."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--session {spec!r}: expected MODULE:ATTR, e.g. mypkg.voice:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--session {spec!r}: cannot import {module_name} ({err})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"--session {spec!r}: {module_name} has no attribute {attr!r}")
    factory = getattr(module, attr)
    if not isinstance(factory, SessionFactory) and callable(factory):
        try:
            inspect.signature(factory).bind()
        except (TypeError, ValueError):
            raise ConfigError(f"--session {spec!r}: {attr} is neither a SessionFactory nor "
                              "callable without arguments") from None
        factory = factory()
    if not isinstance(factory, SessionFactory):
        raise ConfigError(f"--session {spec!r}: {type(factory).__name__} is not a SessionFactory "
                          "(needs name, sample_rate, frame_samples, new_session(), warmup())")
    return factory
