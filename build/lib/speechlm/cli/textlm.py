"""`speechlm text-lm train`: BPE tokenizer + tiny text LM, the warm start for TWIST recipes."""

from __future__ import annotations

import argparse

from speechlm.core.config import add_config_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("text-lm", help="train a small text LM (warm start for TWIST)",
                            description="Text LMs used to warm-start speech LMs.")
    tsub = parser.add_subparsers(dest="textlm_command", metavar="<action>", required=True)
    train = tsub.add_parser("train", help="train a byte-level BPE tokenizer and a text LM",
                            description="Train BPE + a Llama text LM on public-domain text (default: "
                            "the texts shipped with speechlm; every 20th sentence is held out). "
                            "Keys come from --config FILE.yaml, then flags, then key=value.")
    train.add_argument("--out", default=None, help="output model directory (key: out)")
    train.add_argument("--text", default=None, help="a .txt file or a folder of them")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps (default 400)")
    train.add_argument("--preset", default=None, choices=["tiny", "small", "base"])
    train.add_argument("--bpe-size", type=int, default=None, help="BPE vocabulary (default 2048)")
    train.add_argument("--seq-len", type=int, default=None, help="default 128")
    train.add_argument("--batch-size", type=int, default=None, help="default 16")
    train.add_argument("--lr", type=float, default=None, help="default 2e-3")
    train.add_argument("--seed", type=int, default=None, help="default 0")
    train.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"],
                       help="auto: bf16 on GPU, fp32 on CPU; bf16 is faster on CPUs with AVX512-BF16/AMX")
    add_config_arguments(train)
    train.set_defaults(handler=_train)


FLAGS = {"out": "out", "text": "text", "steps": "steps", "preset": "preset", "bpe_size": "bpe_size",
         "seq_len": "seq_len", "batch_size": "batch_size", "lr": "lr", "seed": "seed",
         "precision": "precision"}


def _train(args: argparse.Namespace) -> int:
    from speechlm.lm.plots import read_metrics
    from speechlm.lm.textlm import TextLMConfig

    cfg = config_from_args(TextLMConfig, args, FLAGS)
    out = cfg.run()
    valid = [r["valid_loss"] for r in read_metrics(out) if "valid_loss" in r]
    print(f"text LM {out}: valid loss {valid[-1]:.4f}" if valid else f"text LM {out}")
    return 0
