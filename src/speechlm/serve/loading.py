"""Find the :class:`SessionFactory` to serve: ``--session MODULE:ATTR``."""

from __future__ import annotations

import importlib
import inspect

from speechlm.core.errors import ConfigError
from speechlm.serve.session import SessionFactory


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
