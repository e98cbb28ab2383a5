from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from speechlm.core.config import load_config, parse_overrides
from speechlm.core.errors import ConfigError


@dataclass(frozen=True)
class Cfg:
    steps: int = 10
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"
    out: str | None = None
    flag: bool = False

    def validate(self) -> list[str]:
        return [f"steps={self.steps} must be >= 1"] if self.steps < 1 else []


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\nmode: b\n")
    cfg = load_config(Cfg, path, ["lr=0.5", "flag=true", "out=x"])
    assert (cfg.steps, cfg.lr, cfg.mode, cfg.out, cfg.flag) == (5, 0.5, "b", "x", True)


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, path, ["stepz=3"])
    msg = str(err.value)
    assert str(path) in msg and "stepz" in msg and "valid keys: flag, lr, mode, out, steps" in msg


@pytest.mark.parametrize("override, needle", [("steps=abc", "steps='abc': must be an integer"),
                                              ("steps=1.5", "must be an integer"),
                                              ("mode=c", "must be one of ['a', 'b']"),
                                              ("steps=0", "steps=0 must be >= 1"),
                                              ("flag=maybe", "must be true or false")])
def test_bad_values(override, needle):
    with pytest.raises(ConfigError, match="defaults") as err:
        load_config(Cfg, None, [override])
    assert needle in str(err.value)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "missing.yaml")


def test_stage_config_from_yaml_flags_and_overrides(tmp_path):
    import argparse

    from speechlm.core.config import add_config_arguments, config_from_args

    path = tmp_path / "stage.yaml"
    path.write_text("steps: 5\nlr: 0.1\nmode: b\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--flag", action="store_true", default=None)
    flags = {"steps": "steps", "flag": "flag"}
    # YAML < flag < key=value; a flag left out keeps the YAML value
    cfg = config_from_args(Cfg, parser.parse_args(["--config", str(path), "--steps", "7",
                                                   "lr=0.2"]), flags)
    assert (cfg.steps, cfg.lr, cfg.mode, cfg.flag) == (7, 0.2, "b", False)
    cfg = config_from_args(Cfg, parser.parse_args(["--config", str(path), "--steps", "7",
                                                   "steps=9", "--flag"]), flags)
    assert (cfg.steps, cfg.flag) == (9, True)
    assert config_from_args(Cfg, parser.parse_args([]), flags) == Cfg()
    with pytest.raises(ConfigError, match=r"stage\.yaml: unknown key\(s\) nope"):
        config_from_args(Cfg, parser.parse_args(["--config", str(path), "nope=1"]), flags)
    with pytest.raises(ConfigError, match="command line: steps=0 must be >= 1"):
        config_from_args(Cfg, parser.parse_args(["--steps", "0"]), flags)
