"""Recipes: thin ``run(cfg, resume, source) -> run dir`` modules selected with ``recipe: NAME``.

A recipe reads its (already built) inputs, builds the token space, the sequence builder's data
and the model, and calls the generic loop (:func:`speechlm.lm.loop.train_loop`). Building missing
inputs (corpus, tokenizer, token dataset, text LM) is not a recipe's job: the pipeline layer
(:mod:`speechlm.pipeline`) does it before calling :func:`run_recipe`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from speechlm.core.errors import ConfigError
from speechlm.lm.config import TrainConfig

# recipe name -> module (in speechlm.lm.recipes) that defines run(cfg, resume, source)
RECIPES = {"pretrain": "pretrain"}


def run_recipe(cfg: TrainConfig, resume: bool = False, source: str = "config") -> Path:
    """Run ``cfg.recipe`` on ``cfg``; returns the run dir."""
    if cfg.recipe not in RECIPES:
        raise ConfigError(f"{source}: recipe={cfg.recipe!r} is not one of {sorted(RECIPES)}")
    module = importlib.import_module(f"speechlm.lm.recipes.{RECIPES[cfg.recipe]}")
    return module.run(cfg, resume=resume, source=source)
