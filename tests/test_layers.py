"""The package layers import only downward (docs/ARCHITECTURE.md); the CLI parser stays light."""

import ast
import subprocess
import sys
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
    "pipeline": {"core", "data", "tokenizers", "lm", "vocoder"},   # src/speechlm/pipeline.py
    "eval": {"core", "data", "tokenizers", "lm", "vocoder", "generation"},
    "serve": {"core", "data", "tokenizers", "lm", "vocoder", "generation"},
}
COMMANDS = {"corpus", "tokenizer", "tokenize", "vocoder", "resynth", "text-lm", "train", "generate",
            "eval", "serve", "client", "demo"}


def speechlm_imports(source: str) -> set[str]:
    """Top-level speechlm packages/modules imported by ``source`` (absolute imports)."""
    layers = set()
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "speechlm" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def layer_files(layer: str) -> list[Path]:
    single = SRC / f"{layer}.py"
    return [single] if single.is_file() else sorted((SRC / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_lower_layers(layer):
    files = layer_files(layer)
    assert files, f"layer {layer} has no modules"
    for path in files:
        bad = speechlm_imports(path.read_text()) - ALLOWED[layer] - {layer}
        assert not bad, f"{path.relative_to(SRC)} imports upper layer(s) {sorted(bad)}"


def test_the_check_catches_an_upward_import():
    """A mutant of the check (e.g. one that ignores function-level imports) must fail here."""
    source = "import numpy\ndef f():\n    from speechlm.pipeline import train\n    import speechlm.eval.asr\n"
    assert speechlm_imports(source) == {"pipeline", "eval"}
    assert speechlm_imports("from . import sibling\nfrom speechlm import __version__\n") == set()


def test_cli_has_every_stage_and_each_help_names_its_options():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert COMMANDS <= set(commands), COMMANDS - set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert f"speechlm {name}" in text, name
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in text, f"`speechlm {name} --help` does not list {flag}"


def test_building_the_parser_imports_no_torch():
    """`speechlm --help` stays fast: stage modules import torch/transformers in their handlers."""
    code = ("import sys; from speechlm.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_lm_modules_and_functions_stay_small():
    """Issue 10: no module in speechlm/lm over 400 lines, no function there over 80."""
    for path in (SRC / "lm").rglob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= 400, f"{path.relative_to(SRC)} has {source.count(chr(10))} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path.relative_to(SRC)}:{node.lineno} {node.name} has {length} lines"
