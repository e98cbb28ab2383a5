"""`speechlm text-lm train`: BPE tokenizer + tiny text LM, the warm start for TWIST recipes."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("text-lm", help="train a small text LM (warm start for TWIST)",
                            description="Text LMs used to warm-start speech LMs.")
    tsub = parser.add_subparsers(dest="textlm_command", metavar="<action>", required=True)
    train = tsub.add_parser("train", help="train a byte-level BPE tokenizer and a text LM",
                            description="Train BPE + a Llama text LM on public-domain text (default: "
                            "the texts shipped with speechlm; every 20th sentence is held out).")
    train.add_argument("--out", required=True, help="output model directory")
    train.add_argument("--text", default=None, help="a .txt file or a folder of them")
    train.add_argument("--steps", type=int, default=400, help="optimizer steps (default 400)")
    train.add_argument("--preset", default="tiny", choices=["tiny", "small", "base"])
    train.add_argument("--bpe-size", type=int, default=2048, help="BPE vocabulary (default 2048)")
    train.add_argument("--seq-len", type=int, default=128)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                       help="auto: bf16 on GPU, fp32 on CPU; bf16 is faster on CPUs with AVX512-BF16/AMX")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from speechlm.core.errors import ConfigError
    from speechlm.lm.plots import read_metrics
    from speechlm.lm.textlm import train_text_lm

    if args.steps < 1 or args.bpe_size < 260 or args.seq_len < 2 or args.batch_size < 1:
        raise ConfigError(f"text-lm train: need --steps >= 1, --bpe-size >= 260, --seq-len >= 2, "
                          f"--batch-size >= 1 (got {args.steps}, {args.bpe_size}, {args.seq_len}, "
                          f"{args.batch_size})")
    out = train_text_lm(args.out, text=args.text, steps=args.steps, seed=args.seed,
                        preset=args.preset, bpe_size=args.bpe_size, seq_len=args.seq_len,
                        batch_size=args.batch_size, lr=args.lr,
                        overrides={"precision": args.precision})
    valid = [r["valid_loss"] for r in read_metrics(out) if "valid_loss" in r]
    print(f"text LM {out}: valid loss {valid[-1]:.4f}" if valid else f"text LM {out}")
    return 0
