"""`speechlm prosody train|encode|eval|style-classifier`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechlm.core.config import add_config_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prosody", help="F0, duration, pitch and style tokenizers",
                            description="Prosody tokenizers: pGSLM duration + F0 streams aligned "
                            "with units (unit), SpiRit-LM pitch tokens (pitch-vq) and style tokens "
                            "(style). A tokenizer is a directory.")
    psub = parser.add_subparsers(dest="prosody_command", metavar="<action>", required=True)

    train = psub.add_parser("train", help="fit a prosody tokenizer on a corpus",
                            description="Fit a prosody tokenizer of one kind. Keys come from "
                            "--config YAML, then the flags, then key=value overrides (an unknown "
                            "key lists the valid ones).")
    kinds = train.add_subparsers(dest="kind", metavar="<kind>", required=True)
    for kind, text in (("unit", "pGSLM duration + F0 token per unit"),
                       ("pitch-vq", "SpiRit-LM pitch tokens: VQ-VAE over F0 (12.5 Hz)"),
                       ("style", "style tokens: k-means over pooled features (1 per window_s)")):
        k = kinds.add_parser(kind, help=text, description=text)
        k.add_argument("--corpus", default=None, help="corpus directory")
        k.add_argument("--out", default=None, help="output tokenizer directory")
        if kind == "unit":
            k.add_argument("--units-tokenizer", default=None,
                           help="unit tokenizer directory whose units the streams align with")
        add_config_arguments(k)
        k.set_defaults(handler=_train)

    enc = psub.add_parser("encode", help="prosody tokens of a corpus or one audio file",
                          description="With --corpus/--out: write a multi-stream token dataset "
                          "(units + every given tokenizer's streams). With --audio: print the "
                          "tokens of one file as JSON.")
    enc.add_argument("--tokenizer", action="append", required=True,
                     help="prosody tokenizer directory (repeat for several kinds)")
    enc.add_argument("--corpus", default=None, help="corpus directory")
    enc.add_argument("--out", default=None, help="output token dataset directory")
    enc.add_argument("--units", default=None,
                     help="unit tokenizer (default: the one a unit tokenizer was fitted with)")
    enc.add_argument("--audio", default=None, help="one audio file instead of a corpus")
    enc.add_argument("--speaker", default=None, help="speaker of --audio (default: unseen)")
    enc.add_argument("--threads", type=int, default=1)
    enc.set_defaults(handler=_encode)

    ev = psub.add_parser("eval", help="round-trip F0 error in cents",
                         description="Encode and decode the F0 of a split (default heldout: "
                         "voices never seen in training) and report the error in cents.")
    ev.add_argument("--tokenizer", required=True, help="unit or pitch-vq tokenizer directory")
    ev.add_argument("--corpus", required=True, help="corpus directory")
    ev.add_argument("--split", default="heldout")
    ev.add_argument("--max-utterances", type=int, default=None)
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--out", default=None, help="also write the result JSON here")
    ev.add_argument("--json", action="store_true", help="print a JSON object")
    ev.set_defaults(handler=_eval)

    voc = psub.add_parser("vocoder", help="train an F0-aware unit vocoder",
                          description="Train the unit vocoder (speechlm vocoder train, same keys: "
                          "--config FILE.yaml, flags, key=value) with one extra per-frame input, "
                          "the log-F0 of each unit frame, so generated intonation is audible. "
                          "Units-only vocoders stay the baseline.")
    add_config_arguments(voc)
    for flag, text in (("--corpus", "corpus directory"), ("--tokenizer", "unit tokenizer directory"),
                       ("--units", "token dataset of that tokenizer (reuses its units)"),
                       ("--out", "output vocoder directory")):
        voc.add_argument(flag, default=None, help=text)
    voc.add_argument("--steps", type=int, default=None, help="training steps (default 800)")
    voc.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    voc.set_defaults(handler=_vocoder)

    cls = psub.add_parser("style-classifier", help="train the style classifier of a corpus",
                          description="Train a classifier of the corpus' style labels on pooled "
                          "prosodic/spectral features (train split) and report its accuracy on "
                          "held-out voices against chance.")
    cls.add_argument("--corpus", required=True, help="corpus with a 'style' label per utterance")
    cls.add_argument("--out", required=True, help="output classifier directory")
    cls.add_argument("--steps", type=int, default=500)
    cls.add_argument("--hidden", type=int, default=0,
                     help="hidden units (default 0: softmax regression)")
    cls.add_argument("--seed", type=int, default=0)
    cls.add_argument("--clip-seconds", type=float, default=None,
                     help="train and score on clips this long (e.g. 2, the continuations that "
                     "`eval --suite prosody` judges) instead of whole utterances")
    cls.add_argument("--json", action="store_true", help="print a JSON object")
    cls.set_defaults(handler=_classifier)


def _train(args: argparse.Namespace) -> int:
    from speechlm.core.config import config_from_args
    from speechlm.tokenizers.prosody import load_prosody_tokenizer
    from speechlm.tokenizers.prosody.train import SCHEMAS, train_prosody_tokenizer

    flags = {"corpus": "corpus", "out": "out", "units_tokenizer": "unit_tokenizer"}
    cfg = config_from_args(SCHEMAS[args.kind], args, flags)
    tok = load_prosody_tokenizer(train_prosody_tokenizer(cfg))
    streams = ", ".join(f"{s['name']} ({s.get('vocab_size', '-')})"
                        for s in json.loads((tok.path / "config.json").read_text())["streams"])
    print(f"prosody tokenizer {tok.path}: kind {tok.kind}, streams {streams}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from speechlm.core.errors import ConfigError

    if args.audio is not None:
        return _encode_file(args)
    if not args.corpus or not args.out:
        raise ConfigError("prosody encode needs --corpus and --out (or --audio)")
    from speechlm.tokenizers.prosody.dataset import encode_corpus
    from speechlm.tokenizers.tokens import TokenDataset

    path = encode_corpus(args.corpus, args.out, args.tokenizer, args.units, threads=args.threads)
    ds = TokenDataset(path)
    streams = ", ".join(f"{s['name']}={s['vocab_size']}@{s['frame_rate']:g}Hz"
                        for s in ds.meta["streams"])
    counts = ", ".join(f"{k}={v}" for k, v in ds.meta["utterances"].items())
    print(f"token dataset {path}: streams {streams} ({counts})")
    return 0


def _encode_file(args: argparse.Namespace) -> int:
    from speechlm.data.audio import read_audio
    from speechlm.tokenizers.prosody import load_prosody_tokenizer
    from speechlm.tokenizers.semantic.tokenizer import load_tokenizer

    samples = read_audio(Path(args.audio))
    out: dict = {"audio": args.audio, "speaker": args.speaker}
    for path in args.tokenizer:
        tok = load_prosody_tokenizer(path)
        if tok.kind == "unit-prosody":
            units = load_tokenizer(args.units).encode(samples) if args.units else None
            p = tok.encode(samples, args.speaker, units=units)
            out.update(units=p.units.tolist(), durations=p.durations.tolist(),
                       duration_tokens=p.duration_tokens.tolist(), f0_tokens=p.f0_tokens.tolist(),
                       logf0_offset=p.offset)
        else:
            tokens, durations = tok.encode(samples, args.speaker)
            name = "pitch" if tok.kind == "pitch-vq" else "style"
            out.update({f"{name}_tokens": tokens.tolist(), f"{name}_durations": durations.tolist()})
    print(json.dumps(out))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from speechlm.tokenizers.prosody.roundtrip import roundtrip_error

    result = roundtrip_error(args.tokenizer, args.corpus, split=args.split,
                             max_utterances=args.max_utterances, threads=args.threads,
                             show_progress=not args.json)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['kind']} tokenizer {result['tokenizer']} on {result['split']} "
          f"({result['utterances']} utterances, {result['frames']} voiced frames):")
    print(f"  F0 contour error  median {result['median_cents']:.1f} cents, mean "
          f"{result['mean_cents']:.1f}, p90 {result['p90_cents']:.1f} "
          f"(flat mean-F0 baseline: median {result['flat_median_cents']:.1f})")
    if "unit_median_cents" in result:
        print(f"  per-unit F0       median {result['unit_median_cents']:.1f} cents")
    if "voicing_accuracy" in result:
        print(f"  voicing accuracy  {100 * result['voicing_accuracy']:.1f}%")
    return 0


def _vocoder(args: argparse.Namespace) -> int:
    from speechlm.core.config import config_from_args
    from speechlm.tokenizers.prosody.vocoder_stream import LOGF0, LogF0Stream
    from speechlm.vocoder.train import VocoderTrainConfig, train_vocoder

    flags = {k: k for k in ("corpus", "tokenizer", "units", "out", "steps")}
    cfg = config_from_args(VocoderTrainConfig, args, flags)
    voc = train_vocoder(cfg, streams={LOGF0: LogF0Stream()}, resume=args.resume)
    print(f"F0-aware vocoder {cfg.out}: streams {voc.streams}, {cfg.steps} steps")
    return 0


def _classifier(args: argparse.Namespace) -> int:
    from speechlm.eval.style import train_style_classifier

    report = train_style_classifier(args.corpus, args.out, steps=args.steps, hidden=args.hidden,
                                    seed=args.seed, clip_seconds=args.clip_seconds,
                                    show_progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for split, row in report["splits"].items():
        print(f"{split}: accuracy {100 * row['accuracy']:.1f}% on {row['items']} {report['items']} "
              f"(chance {100 * row['chance']:.1f}%)")
    print(f"classifier saved to {args.out} (report in {args.out}/report.json)")
    return 0
