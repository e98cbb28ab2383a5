"""`speechlm vocoder train|eval` and `speechlm resynth`."""

from __future__ import annotations

import argparse
import json

from speechlm.core.config import add_config_arguments

_TRAIN_FLAGS = {name: name for name in ("corpus", "tokenizer", "units", "out", "steps",
                                          "max_minutes", "batch", "seed", "threads")}


def register(sub: argparse._SubParsersAction) -> None:
    from speechlm.eval.asr import ASR_HELP

    parser = sub.add_parser("vocoder", help="train and evaluate unit vocoders",
                            description="Unit vocoder: deduplicated units + durations (+ speaker "
                            "d-vector) -> log-mel -> waveform (Vocos-style generator trained with "
                            "multi-period + multi-resolution discriminators; Griffin-Lim baseline).")
    vsub = parser.add_subparsers(dest="vocoder_command", metavar="<action>", required=True)

    train = vsub.add_parser(
        "train", help="train a unit vocoder on a corpus",
        description="Train on the corpus' train split with a fixed step budget. Keys come from "
        "--config FILE.yaml, then the flags below, then key=value overrides (every key of "
        "speechlm.vocoder.VocoderTrainConfig, e.g. gan_start=0.5 speaker_embedding=false dim=256). "
        "configs/vocoder/demo.yaml is the demo's budget, configs/vocoder/long.yaml the longer one.")
    add_config_arguments(train)
    train.add_argument("--corpus", default=None, help="corpus directory")
    train.add_argument("--tokenizer", default=None, help="tokenizer directory (K and frame rate)")
    train.add_argument("--units", default=None,
                       help="token dataset of the same tokenizer (`speechlm tokenize`): reuse its "
                       "units instead of encoding the corpus again")
    train.add_argument("--out", default=None, help="output vocoder directory")
    train.add_argument("--steps", type=int, default=None, help="training steps (default 900)")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="optional wall-clock cap in minutes on top of --steps (0: none, the "
                       "default)")
    train.add_argument("--batch", type=int, default=None, help="windows per step (default 8)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the last checkpoint in --out (same config)")
    train.set_defaults(handler=_train)

    ev = vsub.add_parser("eval", help="ASR WER and spectral distance of resynthesised speech",
                         description="Resynthesise utterances of a split (audio -> units -> audio) "
                         "and compare ASR WER to the original audio's (wer_ratio = resynth / "
                         "original); also MCD, log-mel distance, the Griffin-Lim baseline and copy "
                         "synthesis (the original audio's mel vocoded: the vocoder's own loss).")
    ev.add_argument("--corpus", required=True)
    ev.add_argument("--tokenizer", required=True)
    ev.add_argument("--vocoder", required=True)
    ev.add_argument("--split", default="heldout")
    ev.add_argument("--limit", type=int, default=30, help="utterances (default 30)")
    ev.add_argument("--asr", default="whisper",
                    help=f"{ASR_HELP}; a comma-separated list judges with each (the first one "
                    "gives the top-level figures)")
    ev.add_argument("--speaker", default="source",
                    help="source (each clip's own voice, default) | average | a training speaker")
    ev.add_argument("--no-griffin-lim", action="store_true", help="skip the baseline")
    ev.add_argument("--no-copy-synthesis", action="store_true",
                    help="skip vocoding the original audio's mel")
    ev.add_argument("--out", default=None, help="also write report.json and example WAVs here")
    ev.add_argument("--threads", type=int, default=1)
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.set_defaults(handler=_eval)

    rs = sub.add_parser("resynth", help="audio -> units -> audio with a tokenizer and a vocoder")
    rs.add_argument("--tokenizer", required=True)
    rs.add_argument("--vocoder", required=True)
    voice = rs.add_mutually_exclusive_group()
    voice.add_argument("--speaker", default=None, help="a training speaker's name")
    voice.add_argument("--reference", default=None,
                       help="a clip of the voice to speak with (any voice; default: the input's)")
    voice.add_argument("--average-voice", action="store_true", help="speak with the average voice")
    rs.add_argument("--griffin-lim", action="store_true", help="use the Griffin-Lim baseline")
    rs.add_argument("input", help="input audio file (any rate; resampled to 16 kHz)")
    rs.add_argument("output", help="output .wav (16 kHz)")
    rs.set_defaults(handler=_resynth)


def _train(args: argparse.Namespace) -> int:
    from speechlm.core.config import config_from_args
    from speechlm.vocoder import VocoderTrainConfig, train_vocoder

    if args.max_minutes == 0:  # --max-minutes 0 keeps its old meaning: no wall-clock cap
        args.max_minutes = None
    cfg = config_from_args(VocoderTrainConfig, args, _TRAIN_FLAGS)
    voc = train_vocoder(cfg, resume=args.resume)
    t = voc.info["training"]
    print(f"vocoder {cfg.out}: {t['steps']} steps in {t['seconds']:.0f} s (mel L1 "
          f"{t.get('mel_l1', float('nan')):.3f}, generator mel L1 {t.get('voc_mel_l1', float('nan')):.3f})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from speechlm.eval.resynthesis import resynthesis_report

    report = resynthesis_report(args.tokenizer, args.vocoder, args.corpus, split=args.split,
                                limit=args.limit, griffin_lim=not args.no_griffin_lim,
                                threads=args.threads, show_progress=not args.json, asr=args.asr,
                                speaker=args.speaker, out_dir=args.out,
                                copy_synthesis=not args.no_copy_synthesis)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['utterances']} {report['split']} utterances, speaker={report['speaker']}")
    for judge, entry in report["by_asr"].items():
        print(f"  {judge}:")
        print(f"    original            WER {100 * entry['wer_original']:.1f}%")
        print(f"    resynth (neural)    WER {100 * entry['wer_resynth']:.1f}%  ratio "
              f"{entry['wer_ratio']:.2f}")
        for system in ("griffin_lim", "copy_neural", "copy_griffin_lim"):
            if f"wer_resynth_{system}" in entry:
                print(f"    {system.replace('_', ' '):19s} WER {100 * entry[f'wer_resynth_{system}']:.1f}%"
                      f"  ratio {entry[f'wer_ratio_{system}']:.2f}")
    print(f"  neural: MCD {report['mcd_db']:.2f} dB, log-mel L1 {report['mel_l1']:.3f}")
    for system in ("griffin_lim", "copy_neural", "copy_griffin_lim"):
        if f"mcd_db_{system}" in report:
            print(f"  {system.replace('_', ' ')}: MCD {report[f'mcd_db_{system}']:.2f} dB, log-mel L1 "
                  f"{report[f'mel_l1_{system}']:.3f}")
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
    samples = check_clip(read_audio(args.input), args.input)  # errors name the file
    if args.speaker is not None:
        speaker = args.speaker
    elif args.reference is not None:
        speaker = check_clip(read_audio(args.reference), args.reference)
    else:
        speaker = None if args.average_voice else samples
    if voc.config.speaker_dim == 0:
        speaker = None  # a vocoder trained without speaker conditioning has one voice
    wav = resynthesize(tok, voc, samples, speaker=speaker, griffin_lim_baseline=args.griffin_lim)
    write_wav(args.output, wav)
    print(f"wrote {args.output}: {wav.size / 16000:.2f} s from {samples.size / 16000:.2f} s of input")
    return 0
