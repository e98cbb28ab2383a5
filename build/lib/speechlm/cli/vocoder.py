"""`speechlm vocoder train|eval` and `speechlm resynth`."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("vocoder", help="train and evaluate unit vocoders",
                            description="Unit vocoder: units (+ speaker) -> log-mel -> waveform "
                            "(Vocos-style iSTFT head; Griffin-Lim as a baseline).")
    vsub = parser.add_subparsers(dest="vocoder_command", metavar="<action>", required=True)

    train = vsub.add_parser("train", help="train a unit vocoder on a corpus")
    train.add_argument("--corpus", required=True, help="corpus directory")
    train.add_argument("--tokenizer", required=True, help="tokenizer directory")
    train.add_argument("--out", required=True, help="output vocoder directory")
    train.add_argument("--steps", type=int, default=3000, help="maximum steps (default 3000)")
    train.add_argument("--max-minutes", type=float, default=2.0,
                       help="stop after this many minutes, data preparation included "
                       "(default 2; 0 = only --steps)")
    train.add_argument("--batch", type=int, default=8)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=1)
    train.set_defaults(handler=_train)

    ev = vsub.add_parser("eval", help="WER (pocketsphinx) and MCD of resynthesised speech",
                         description="Resynthesise held-out utterances (audio -> units -> audio) "
                         "and compare pocketsphinx WER to the original audio's; also MCD and the "
                         "Griffin-Lim baseline.")
    ev.add_argument("--corpus", required=True)
    ev.add_argument("--tokenizer", required=True)
    ev.add_argument("--vocoder", required=True)
    ev.add_argument("--split", default="heldout")
    ev.add_argument("--limit", type=int, default=30, help="utterances (default 30)")
    ev.add_argument("--no-griffin-lim", action="store_true", help="skip the baseline")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(handler=_eval)

    rs = sub.add_parser("resynth", help="audio -> units -> audio with a tokenizer and a vocoder")
    rs.add_argument("--tokenizer", required=True)
    rs.add_argument("--vocoder", required=True)
    rs.add_argument("--speaker", default=None, help="training speaker name (default: average voice)")
    rs.add_argument("--griffin-lim", action="store_true", help="use the Griffin-Lim baseline")
    rs.add_argument("input", help="input audio file (any rate; resampled to 16 kHz)")
    rs.add_argument("output", help="output .wav (16 kHz)")
    rs.set_defaults(handler=_resynth)


def _train(args: argparse.Namespace) -> int:
    from speechlm.vocoder import load_vocoder, train_vocoder

    path = train_vocoder(args.corpus, args.tokenizer, args.out, steps=args.steps, seed=args.seed,
                         max_minutes=args.max_minutes or None, batch=args.batch, threads=args.threads)
    training = load_vocoder(path).info["training"]
    print(f"vocoder {path}: {training['steps']} steps in {training['seconds']:.0f} s "
          f"(mel L1 {training.get('mel_l1', float('nan')):.3f}, STFT {training.get('stft', float('nan')):.3f})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from speechlm.eval.asr import resynthesis_report

    report = resynthesis_report(args.tokenizer, args.vocoder, args.corpus, split=args.split,
                                limit=args.limit, griffin_lim=not args.no_griffin_lim,
                                threads=args.threads, show_progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['utterances']} {report['split']} utterances (pocketsphinx WER)")
    print(f"  original        WER {100 * report['wer_original']:.1f}%")
    print(f"  resynth (Vocos) WER {100 * report['wer_resynth']:.1f}%  ratio {report['wer_ratio']:.2f}  "
          f"MCD {report['mcd_db']:.2f} dB")
    if "wer_resynth_griffin_lim" in report:
        print(f"  resynth (GL)    WER {100 * report['wer_resynth_griffin_lim']:.1f}%  ratio "
              f"{report['wer_ratio_griffin_lim']:.2f}  MCD {report['mcd_db_griffin_lim']:.2f} dB")
    return 0


def _resynth(args: argparse.Namespace) -> int:
    import torch

    from speechlm.data.audio import read_audio, write_wav
    from speechlm.tokenizers import load_tokenizer
    from speechlm.tokenizers.semantic.dsp import check_clip
    from speechlm.vocoder import load_vocoder, resynthesize

    torch.set_num_threads(1)
    tok = load_tokenizer(args.tokenizer)
    voc = load_vocoder(args.vocoder)
    if voc.config.vocab_size != tok.vocab_size:
        from speechlm.core.errors import CheckpointError
        raise CheckpointError(f"{args.vocoder}: vocoder expects K={voc.config.vocab_size} units but "
                              f"{args.tokenizer} has K={tok.vocab_size}")
    samples = check_clip(read_audio(args.input), args.input)  # errors name the file
    wav = resynthesize(tok, voc, samples, speaker=args.speaker, griffin_lim_baseline=args.griffin_lim)
    write_wav(args.output, wav)
    print(f"wrote {args.output}: {wav.size / 16000:.2f} s from {samples.size / 16000:.2f} s of input")
    return 0
