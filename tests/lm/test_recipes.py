"""Recipes are modules found by name; the README's "add a recipe" example runs as written."""

from __future__ import annotations

import importlib.machinery
import re
import sys
import types

import numpy as np
import pytest

from speechlm.core.errors import ConfigError
from speechlm.lm import sequences
from speechlm.lm.model import load_speech_lm
from speechlm.lm.plots import read_metrics
from speechlm.lm.recipes import available
from speechlm.pipeline import train_from_config

from .conftest import GSLM, REPO, overrides


@pytest.fixture
def readme_recipe(monkeypatch):
    """The module of the README's "Add a recipe" section, as speechlm.lm.recipes.continuation."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Add a recipe"):]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    name = "speechlm.lm.recipes.continuation"
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(source, "README.md", "exec"), module.__dict__)
    yield module
    sequences.BUILDERS.pop("continuation", None)


def test_the_readme_recipe_is_one_module_and_trains(readme_recipe, units_dir, tmp_path):
    run = train_from_config(GSLM, overrides(units_dir, tmp_path / "run", "max_steps=3",
                                            "recipe=continuation", "sequence=continuation"))
    assert len(read_metrics(run)) == 3
    lm = load_speech_lm(run)
    assert lm.spec.sequence == "continuation"
    builder = sequences.get_builder("continuation", lm.space)
    example = builder.example(np.array([[1, 2, 3, 4, 5, 6]]), "t")  # <bos> 6 units <eos>: 8 ids
    assert (example.labels[0, :4] == sequences.IGNORE).all()
    assert np.array_equal(example.labels[0, 4:], example.input_ids[0, 4:])


def test_unknown_recipe_lists_the_modules(units_dir, tmp_path):
    assert "pretrain" in available()
    with pytest.raises(ConfigError, match=r"recipe='nope' is not a module in speechlm/lm/recipes "
                                          r"\(have \[.*'pretrain'.*\]\)"):
        train_from_config(GSLM, overrides(units_dir, tmp_path / "run", "recipe=nope"))
    missing = tmp_path / "never-built"
    with pytest.raises(ConfigError, match=r"sequence='nope' is not a registered builder \(\[.*'pretrain'"):
        train_from_config(GSLM, [f"units_dir={missing}", f"corpus_dir={missing}", "sequence=nope"])
    assert not missing.exists()  # nothing was built
