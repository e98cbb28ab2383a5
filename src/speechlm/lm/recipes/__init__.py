"""Recipes: thin ``run(cfg, resume, source) -> run dir`` modules selected with ``recipe: NAME``.

``recipe: NAME`` runs ``speechlm/lm/recipes/NAME.py`` (dashes become underscores), so a new recipe
is one YAML file plus one module, with no registry to edit. A recipe reads its (already built)
inputs, builds the token space, the sequence builder's data and the model, and calls the generic
loop (:func:`speechlm.lm.loop.train_loop`); it may register its own sequence builder
(:func:`speechlm.lm.sequences.register_builder`) at import. Building missing inputs (corpus,
tokenizer, token dataset, text LM) is not a recipe's job: the pipeline layer
(:mod:`speechlm.pipeline`) does it before calling :func:`run_recipe`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType

from speechlm.core.errors import ConfigError
from speechlm.lm.config import TrainConfig
from speechlm.lm.sequences import BUILDERS


def available() -> list[str]:
    """Recipe modules shipped in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def load_recipe(cfg: TrainConfig, source: str = "config") -> ModuleType:
    """Import recipe module ``cfg.recipe`` (which registers its builders) and check that it has a
    ``run`` and that ``cfg.sequence`` names a registered builder: before any input is built."""
    name = f"{__name__}.{cfg.recipe.replace('-', '_')}"
    if not cfg.recipe.replace("-", "_").isidentifier() or importlib.util.find_spec(name) is None:
        raise ConfigError(f"{source}: recipe={cfg.recipe!r} is not a module in speechlm/lm/recipes "
                          f"(have {available()})")
    module = importlib.import_module(name)
    if not callable(getattr(module, "run", None)):
        raise ConfigError(f"{source}: recipe module {name} has no run(cfg, resume, source)")
    if cfg.sequence not in BUILDERS:
        raise ConfigError(f"{source}: sequence={cfg.sequence!r} is not a registered builder "
                          f"({sorted(BUILDERS)})")
    return module


def run_recipe(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    """Run recipe module ``cfg.recipe`` on ``cfg``; returns the run dir."""
    return load_recipe(cfg, source).run(cfg, resume=resume, source=source)
