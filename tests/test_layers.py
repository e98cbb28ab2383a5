"""The package layers import only downward (docs/ARCHITECTURE.md); the CLI help works everywhere."""

import ast
from pathlib import Path

import pytest

from speechlm.cli import build_parser

SRC = Path(__file__).resolve().parents[1] / "src" / "speechlm"
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "tokenizers": {"core", "data"},
    "lm": {"core", "data", "tokenizers"},
    "vocoder": {"core", "data", "tokenizers"},
    "generation": {"core", "data", "tokenizers", "lm", "vocoder"},
    "eval": {"core", "data", "tokenizers", "lm", "vocoder", "generation"},
    "serve": {"core", "data", "tokenizers", "lm", "vocoder", "generation"},
}


def speechlm_imports(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "speechlm" and len(parts) > 1:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_lower_layers(layer):
    for path in (SRC / layer).rglob("*.py"):
        bad = speechlm_imports(path) - ALLOWED[layer] - {layer}
        assert not bad, f"{path.relative_to(SRC)} imports upper layer(s) {sorted(bad)}"


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"corpus"} <= set(commands)
    for name, sub in commands.items():
        assert sub.format_help().strip(), name
