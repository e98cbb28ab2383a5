"""`speechlm codec train|encode|decode|eval`: acoustic tokens from a neural codec."""

from __future__ import annotations

import argparse
import json

from speechlm.core.config import add_config_arguments


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("codec", help="train, use and evaluate neural audio codecs (acoustic tokens)",
                            description="A neural codec (log-mel encoder, Vocos-style iSTFT decoder; SEANet optional) "
                            "with residual VQ at 16 kHz, 50 Hz frames. "
                            "A codec is a directory; --codec also takes hf:PATH (a local HF "
                            "EncodecModel / MimiModel directory).")
    csub = parser.add_subparsers(dest="codec_command", metavar="<action>", required=True)

    train = csub.add_parser("train", help="train a codec on a corpus",
                            description="Train on the corpus' train split for a fixed number of steps "
                            "(the default fits about 10 minutes on 2 CPU cores with --threads 2). "
                            "Every key of the "
                            "training config can be set with --config FILE.yaml or key=value.")
    train.add_argument("--corpus", required=True, help="corpus directory")
    train.add_argument("--out", required=True, help="output codec directory (also the run directory)")
    train.add_argument("--steps", type=int, default=None, help="training steps (default 1000)")
    train.add_argument("--codebooks", type=int, default=None, help="residual codebooks K (default 8)")
    train.add_argument("--codebook-size", type=int, default=None, help="entries per codebook (default 1024)")
    train.add_argument("--distill", default=None, metavar="TOKENIZER",
                       help="distil codebook 1 towards this unit tokenizer's features (a tokenizer "
                       "directory, e.g. ssl-tiny or whisper)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    train.add_argument("--device", default="cpu", help="torch device for the networks (default cpu)")
    add_config_arguments(train)
    train.set_defaults(handler=_train)

    enc = csub.add_parser("encode", help="audio file -> (K, N) codes in a .npy file")
    enc.add_argument("--codec", required=True, help="codec directory or hf:PATH")
    enc.add_argument("--codebooks", type=int, default=None, help="keep the first k codebooks (default all)")
    enc.add_argument("input", help="input audio (any rate; resampled to 16 kHz)")
    enc.add_argument("output", help="output .npy, int64 (codebooks, frames)")
    enc.set_defaults(handler=_encode)

    dec = csub.add_parser("decode", help=".npy codes -> 16 kHz wav")
    dec.add_argument("--codec", required=True, help="codec directory or hf:PATH")
    dec.add_argument("--codebooks", type=int, default=None, help="decode only the first k codebooks")
    dec.add_argument("input", help="input .npy (codebooks, frames)")
    dec.add_argument("output", help="output .wav (16 kHz)")
    dec.set_defaults(handler=_decode)

    ev = csub.add_parser("eval", help="bitrate, mel distance, SI-SNR, WER ratio, speaker similarity, "
                         "codebook usage at 1, 2, 4, ... all codebooks",
                         description="Encode and decode a split with 1, 2, 4 and all codebooks and "
                         "compare with the original audio. --tokenizer adds ABX/PNMI of codebook-1 "
                         "tokens next to the tokenizer's units; --vocoder (with --tokenizer) adds the "
                         "unit-vocoder and Griffin-Lim resynthesis as baselines.")
    ev.add_argument("--codec", required=True, help="codec directory or hf:PATH")
    ev.add_argument("--corpus", required=True, help="corpus directory")
    ev.add_argument("--split", default="heldout", help="split to evaluate (default heldout)")
    ev.add_argument("--limit", type=int, default=30, help="utterances (default 30; 0 = all)")
    ev.add_argument("--tokenizer", default=None, help="unit tokenizer directory for ABX/PNMI comparison")
    ev.add_argument("--vocoder", default=None, help="unit vocoder directory for the resynthesis baseline")
    ev.add_argument("--asr", default=None, help="recogniser for WER: whisper (default, Whisper "
                    "tiny.en) | whisper:PATH | pocketsphinx")
    ev.add_argument("--no-asr", action="store_true", help="skip WER")
    ev.add_argument("--no-speaker", action="store_true", help="skip speaker similarity")
    ev.add_argument("--triplets", type=int, default=2000, help="ABX triplets per condition")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true", help="print a JSON object")
    ev.set_defaults(handler=_eval)


_FLAGS = {"steps": "steps", "codebooks": "codebooks", "codebook_size": "codebook_size",
          "distill": "distill", "seed": "seed", "threads": "threads"}


def _train(args: argparse.Namespace) -> int:
    from speechlm.core.config import config_from_args
    from speechlm.tokenizers.codec import load_codec
    from speechlm.tokenizers.codec.train import CodecTrainConfig, train_codec

    cfg = config_from_args(CodecTrainConfig, args, _FLAGS)
    path = train_codec(args.corpus, args.out, cfg, threads=cfg.threads, resume=args.resume,
                       device=args.device)
    codec = load_codec(path)
    training = codec.info["training"]
    usage = training["final"].get("usage", [])
    print(f"codec {path}: {codec.n_codebooks} x {codec.codebook_size} codes at {codec.frame_rate:g} Hz "
          f"({codec.bitrate() / 1000:.1f} kbit/s), {training['steps']} steps in {training['seconds']:.0f} s; "
          f"mel loss {training['final'].get('loss_mel', float('nan')):.3f}, codebook usage (last window) "
          f"{min(usage) if usage else float('nan'):.2f}..{max(usage) if usage else float('nan'):.2f}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    from speechlm.data.audio import read_audio
    from speechlm.tokenizers.codec import load_codec

    codec = load_codec(args.codec)
    codes = codec.encode(read_audio(args.input), args.codebooks, source=args.input)
    np.save(args.output, codes)
    print(f"wrote {args.output}: {codes.shape[0]} codebooks x {codes.shape[1]} frames "
          f"({codec.bitrate(codes.shape[0]) / 1000:.2f} kbit/s)")
    return 0


def _decode(args: argparse.Namespace) -> int:
    import numpy as np

    from speechlm.core.errors import DataError
    from speechlm.data.audio import write_wav
    from speechlm.tokenizers.codec import load_codec

    codec = load_codec(args.codec)
    try:
        codes = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{args.input}: cannot read codes ({str(err).splitlines()[0]})") from None
    if args.codebooks is not None:
        if not 1 <= args.codebooks <= codes.shape[0]:
            raise DataError(f"{args.input}: --codebooks {args.codebooks} but the file has "
                            f"{codes.shape[0] if codes.ndim else 0} codebooks")
        codes = codes[: args.codebooks]
    wav = codec.decode(codes, source=args.input)
    write_wav(args.output, wav)
    print(f"wrote {args.output}: {wav.size / 16000:.2f} s from {codes.shape[0]} codebooks")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from speechlm.eval.asr import DEFAULT_ASR
    from speechlm.eval.codec_metrics import evaluate_codec

    result = evaluate_codec(args.codec, args.corpus, split=args.split, limit=args.limit or None,
                            tokenizer_dir=args.tokenizer, vocoder_dir=args.vocoder,
                            asr=None if args.no_asr else (args.asr or DEFAULT_ASR), speaker=not args.no_speaker, n_triplets=args.triplets,
                            seed=args.seed, threads=args.threads, show_progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"codec {result['codec']} on {result['utterances']} {result['split']} utterances "
          f"({result['seconds']:.0f} s)")
    metrics = [m for m in ("bitrate", "mel_distance", "si_snr", "wer_ratio", "speaker_similarity",
                           "codebook_usage") if m in result]
    print("  k  " + "".join(f"{m:>20}" for m in metrics))
    for k in result["codebooks_evaluated"]:
        print(f"  {k:<3}" + "".join(f"{result[m][str(k)]:>20.3f}" for m in metrics))
    for name, row in result.get("baselines", {}).items():
        print(f"  {name}: " + ", ".join(f"{m} {v:.3f}" for m, v in row.items() if isinstance(v, float)))
    for name, row in result.get("semantic", {}).items():
        if isinstance(row, dict):
            print(f"  {name}: ABX within {100 * row['abx_within']:.1f}%, across "
                  f"{100 * row['abx_across']:.1f}%, PNMI {row['pnmi']:.3f}")
    if "speaker_probe" in result:
        p = result["speaker_probe"]
        if "skipped" in p:
            print(f"  speaker probe skipped: {p['skipped']}")
            return 0
        print(f"  speaker probe ({p['speakers']} speakers): codebook 1 {p['codebook1']:.2f}, "
              f"rest {p['rest']:.2f}, chance {p['chance']:.2f}")
    return 0
