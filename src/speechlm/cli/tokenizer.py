"""`speechlm tokenizer train|eval` and `speechlm tokenize`."""

from __future__ import annotations

import argparse
import json

from speechlm.core.config import add_config_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tokenizer", help="train and evaluate speech unit tokenizers",
                            description="Speech tokenizers: features (mfcc, logmel, ssl-tiny, "
                            "whisper, hf:PATH) + k-means units. A tokenizer is a directory.")
    tsub = parser.add_subparsers(dest="tokenizer_command", metavar="<action>", required=True)

    train = tsub.add_parser(
        "train", help="fit a unit tokenizer on a corpus",
        description="Fit a tokenizer on the train split. Keys come from --config FILE.yaml, then "
        "the flags below, then key=value overrides (keys: corpus, out, features, units, layer, "
        "seed, threads, split, max_hours, max_points, ssl_steps, ssl_minutes, ssl_model). "
        "ssl-tiny first trains a small HuBERT-style encoder (two iterations, ssl_steps in total).")
    add_config_arguments(train)
    train.add_argument("--corpus", default=None, help="corpus directory")
    train.add_argument("--out", default=None, help="output tokenizer directory")
    train.add_argument("--features", default=None,
                       help="mfcc | logmel | ssl-tiny | whisper | whisper:PATH (a CTranslate2 "
                       "Whisper directory) | whisper+logmel | whisper:PATH+logmel (Whisper states "
                       "next to per-utterance normalised log-mel; the demo's) | hf:PATH (a local HF "
                       "Hubert/Wav2Vec2/Wav2Vec2Bert directory) (default ssl-tiny)")
    train.add_argument("--layer", type=int, default=None,
                       help="encoder layer to cluster (ssl-tiny and hf: the middle one)")
    train.add_argument("--units", type=int, default=None, help="k-means clusters K (default 100)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--ssl-steps", type=int, default=None,
                       help="ssl-tiny training steps over both iterations (default 1200)")
    train.add_argument("--ssl-minutes", type=float, default=None,
                       help="optional ssl-tiny wall-clock cap in minutes (default 0: steps only)")
    train.add_argument("--max-hours", type=float, default=None, help="use at most this much audio")
    train.add_argument("--threads", type=int, default=None, help="torch/faiss threads (default 1)")
    train.set_defaults(handler=_train)

    ev = tsub.add_parser("eval", help="ABX, PNMI and bitrate of a tokenizer",
                         description="Phone ABX within/across speaker (on units and on continuous "
                         "features), PNMI and bitrate on a split with phone alignments.")
    ev.add_argument("--tokenizer", required=True, help="tokenizer directory")
    ev.add_argument("--corpus", required=True, help="corpus directory (with phone alignments)")
    ev.add_argument("--split", default="heldout", help="split to evaluate (default heldout)")
    ev.add_argument("--triplets", type=int, default=2000, help="ABX triplets per condition")
    ev.add_argument("--max-utterances", type=int, default=None)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true", help="print a JSON object")
    ev.set_defaults(handler=_eval)

    tok = sub.add_parser("tokenize", help="encode a corpus into a token dataset",
                         description="Write UNITS/meta.json and UNITS/data/<split>.parquet with "
                         "deduplicated units, durations and word alignments in frames.")
    tok.add_argument("--tokenizer", required=True, help="tokenizer directory")
    tok.add_argument("--corpus", required=True, help="corpus directory")
    tok.add_argument("--out", required=True, help="output token dataset directory")
    tok.add_argument("--no-dedup", action="store_true", help="one unit per frame")
    tok.add_argument("--threads", type=int, default=1)
    tok.set_defaults(handler=_tokenize)


_TRAIN_FLAGS = {name: name for name in ("corpus", "out", "features", "layer", "units", "seed",
                                          "ssl_steps", "ssl_minutes", "max_hours", "threads")}


def _train(args: argparse.Namespace) -> int:
    from speechlm.core.config import config_from_args
    from speechlm.tokenizers.semantic.tokenizer import TokenizerTrainConfig, fit_tokenizer

    cfg = config_from_args(TokenizerTrainConfig, args, _TRAIN_FLAGS)
    tok = fit_tokenizer(cfg)
    path = tok.save(cfg.out)
    training = tok.info["training"]
    print(f"tokenizer {path}: {tok.features_name} layer={tok.extractor.layer} K={tok.vocab_size} "
          f"{tok.frame_rate:g} Hz, fitted on {training['frames']} frames in "
          f"{training['seconds']:.0f} s")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from speechlm.eval.tokenizer_metrics import evaluate_tokenizer

    result = evaluate_tokenizer(args.tokenizer, args.corpus, split=args.split,
                                n_triplets=args.triplets, seed=args.seed,
                                max_utterances=args.max_utterances, threads=args.threads,
                                show_progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"tokenizer {result['tokenizer']} ({result['features']}, K={result['units']}) on "
          f"{result['split']}: {result['utterances']} utterances, {result['seconds']:.0f} s")
    print(f"  ABX within  {100 * result['abx_within']:.1f}%  (features {100 * result['abx_within_features']:.1f}%)")
    print(f"  ABX across  {100 * result['abx_across']:.1f}%  (features {100 * result['abx_across_features']:.1f}%)")
    print(f"  PNMI        {result['pnmi']:.3f}")
    print(f"  bitrate     {result['bitrate']:.1f} bit/s ({result['tokens_per_second']:.1f} units/s x "
          f"{result['unit_entropy_bits']:.2f} bits, {result['units_used']} units used)")
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from speechlm.tokenizers import TokenDataset, tokenize_corpus

    path = tokenize_corpus(args.tokenizer, args.corpus, args.out, dedup=not args.no_dedup,
                           threads=args.threads)
    ds = TokenDataset(path)
    counts = ", ".join(f"{k}={v}" for k, v in ds.meta["utterances"].items())
    print(f"token dataset {path}: K={ds.vocab_size}, {ds.frame_rate:g} Hz, dedup={ds.dedup} ({counts})")
    return 0
