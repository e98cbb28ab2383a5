"""Typed configs: YAML -> frozen dataclass, ``key=value`` overrides, unknown keys rejected.

A schema is a frozen ``@dataclass`` whose fields carry plain types (``int``, ``float``, ``str``,
``bool``, ``X | None``, ``Literal[...]``). :func:`load_config` reads the YAML file, applies the
overrides, coerces each value to its field type and raises one :class:`ConfigError` that names the
file, every bad key and the list of valid keys. Value checks live in the schema's
``validate() -> list[str]`` and run before any work starts.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Cfg:
...     steps: int = 10
...     lr: float = 1e-3
>>> build_config(Cfg, {"steps": "5"}, source="<doc>").steps
5
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from speechlm.core.errors import ConfigError

T = TypeVar("T")


def parse_overrides(overrides: list[str], source: str = "command line") -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: override {item!r} is not of the form key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ``ValueError`` with a readable reason."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"must be one of {list(choices)}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError("must be true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("must be an integer")
        try:
            as_float = float(value)
        except ValueError:
            raise ValueError("must be an integer") from None
        if not as_float.is_integer():
            raise ValueError("must be an integer")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError("must be a string")
        return str(value)
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ValueError("must be a list")
        return tuple(value if item_tp is Any else [_coerce(v, item_tp, key) for v in value])
    return value


def build_config(schema: type[T], values: dict[str, Any], source: str) -> T:
    """Bind ``values`` to the dataclass ``schema``; one ConfigError lists every problem."""
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    errors: list[str] = []
    unknown = sorted(set(values) - set(fields))
    if unknown:
        errors.append(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            continue
        try:
            kwargs[key] = _coerce(value, hints[key], key)
        except ValueError as err:
            errors.append(f"{key}={value!r}: {err}")
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors))
    cfg = schema(**kwargs)
    check = getattr(cfg, "validate", None)
    problems = check() if check else []
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return cfg


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of YAML file ``path``; ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping of key: value")
    return dict(loaded or {})


def load_config(schema: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """Read YAML ``path`` (or only defaults when None), apply ``key=value`` overrides, validate."""
    values = read_yaml_mapping(path) if path is not None else {}
    values.update(parse_overrides(overrides or []))
    return build_config(schema, values, str(path) if path is not None else "defaults")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` and trailing ``key=value`` overrides, the same for every stage."""
    parser.add_argument("--config", default=None, metavar="FILE.yaml",
                        help="YAML file of this stage's keys; flags and key=value overrides win")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override any config key (unknown keys are listed in the error)")


def config_from_args(schema: type[T], args: argparse.Namespace,
                     flags: Mapping[str, str] | None = None) -> T:
    """A stage's config from ``--config`` YAML, then flags given on the command line, then
    ``key=value`` overrides (later wins). ``flags`` maps argparse ``dest`` -> schema key; a flag
    counts as given when its value is not None, so shortcut flags must default to None (the
    schema holds the defaults)."""
    path = getattr(args, "config", None)
    values = read_yaml_mapping(path) if path else {}
    for dest, key in (flags or {}).items():
        value = getattr(args, dest, None)
        if value is not None:
            values[key] = list(value) if isinstance(value, tuple) else value
    values.update(parse_overrides(getattr(args, "overrides", None) or []))
    return build_config(schema, values, str(path) if path else "command line")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict (tuples become lists) for writing the resolved config next to the outputs."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically: a killed run never leaves half a file)."""
    from speechlm.core.files import atomic_write

    atomic_write(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
