"""`speechlm tokenizer` (not implemented yet)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Placeholder until this stage lands; registers nothing."""
