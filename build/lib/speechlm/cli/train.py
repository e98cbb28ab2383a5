"""`speechlm train --config RECIPE.yaml [key=value ...] [--resume]`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train", help="train a speech LM from a recipe (configs/recipes/*.yaml)",
        description="Train a speech LM (cold init, or warm init from a text LM) from a YAML recipe. "
        "Missing inputs (corpus, tokenizer, token dataset, text LM) are built first. "
        "Example: speechlm train --config configs/recipes/gslm-tiny.yaml max_steps=50 seed=1. "
        "For DDP: accelerate launch --num_processes 2 -m speechlm train --config ...")
    parser.add_argument("--config", required=True, help="recipe YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe keys")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in output_dir")
    parser.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from speechlm.lm.plots import read_metrics
    from speechlm.pipeline import train_from_config

    run_dir = train_from_config(args.config, args.overrides, resume=args.resume)
    rows = read_metrics(run_dir)
    valid = [r["valid_loss"] for r in rows if "valid_loss" in r]
    if rows:
        print(f"trained {run_dir}: step {rows[-1]['step']}, loss {rows[-1]['loss']:.4f}"
              + (f", valid loss {valid[-1]:.4f}" if valid else ""))
    return 0
