"""`speechlm <stage> ...`: one CLI with a subcommand per pipeline stage.

Each stage lives in its own module here with ``register(subparsers)``; modules import heavy
libraries (torch, transformers) inside their handlers so ``--help`` stays fast. Errors caused by
input (``SpeechLMError``) are printed as one line, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from speechlm import __version__
from speechlm.core.errors import SpeechLMError

# Stage modules, in pipeline order. Each defines register(subparsers).
STAGES = ("corpus", "tokenizer", "prosody", "codec", "vocoder", "textlm", "train", "generate", "tts",
          "recognize", "evaluate", "serve", "client", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechlm", description="Train spoken language models: corpus -> tokenizer -> LM -> "
        "vocoder -> evaluation. Run `speechlm <command> --help` for each stage.")
    parser.add_argument("--version", action="version", version=f"speechlm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for stage in STAGES:
        module = importlib.import_module(f"speechlm.cli.{stage}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # HF's per-file "Loading weights" bars drown our own rich progress; users can set it to 0.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except SpeechLMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
