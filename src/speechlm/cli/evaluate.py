"""`speechlm eval`: sWUGGY/sBLIMP/StoryCloze-style pairwise benchmarks for speech and text LMs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechlm.eval.benchmarks import SuiteSizes


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", help="score a speech or text LM on lexical/syntactic/storycloze pairs",
        description="Score a model on spoken (speech LMs) or text (text LMs) minimal pairs: "
        "lexical (word vs wuggy nonword), syntactic (BLiMP), storycloze (tStoryCloze-like random "
        "ending and sStoryCloze-like same-topic ending), crossmodal (joint speech–text models: "
        "StoryCloze in four directions, a cross-modal word test, speech–text similarity by layer, "
        "few-shot ASR) and any BLiMP-format JSONL file. "
        "Accuracy compares summed log-likelihoods (ties 0.5) with a 95%% bootstrap interval; an "
        "untrained model of the same architecture is scored beside it as the check (the "
        "benchmarks are built so that it sits at chance). "
        "Writes OUT/results.json, OUT/run.json, OUT/report.md and OUT/index.html.")
    parser.add_argument("--model", required=True, help="model directory (speechlm train / text-lm)")
    parser.add_argument("--tokenizer", default=None,
                        help="speech tokenizer directory (default: the one the model records)")
    parser.add_argument("--suite", default="lexical,syntactic,storycloze",
                        help="comma-separated benchmarks; empty with --pairs for only the file "
                        "(default: lexical,syntactic,storycloze)")
    parser.add_argument("--pairs", action="append", default=[], metavar="FILE",
                        help="BLiMP-format JSONL (sentence_good, sentence_bad); repeatable")
    parser.add_argument("--modality", choices=("speech", "text", "s2t", "t2s"), default=None,
                        help="joint speech–text models: score --pairs files with the prefix in "
                        "the first modality and the sentences in the second (s2t, t2s) or all in "
                        "one; suite 'crossmodal' adds StoryCloze in all four and the word test")
    parser.add_argument("--word-n", type=int, default=200,
                        help="crossmodal suite: word test pairs (default 200)")
    parser.add_argument("--vocoder", default=None,
                        help="unit vocoder: crossmodal suite, TTS intelligibility (Whisper WER); "
                        "prosody suite, units-only or F0-aware from `speechlm prosody vocoder`; "
                        "duplex suite (required), the system's voice")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--corpus", default=None,
                        help="training corpus, to speak with its held-out voices (default: the "
                        "held-out voices of `speechlm corpus synth` defaults)")
    parser.add_argument("--cache", default=None,
                        help="benchmark audio/unit cache (default $SPEECHLM_CACHE/benchmarks or "
                        "~/.cache/speechlm/benchmarks)")
    parser.add_argument("--seed", type=int, default=0, help="benchmark sampling seed (default 0)")
    parser.add_argument("--no-dedup", action="store_true",
                        help="score one unit per frame instead of run-length deduplicated units")
    sizes = SuiteSizes()
    parser.add_argument("--lexical-n", type=int, default=sizes.lexical,
                        help=f"lexical pairs (default {sizes.lexical})")
    parser.add_argument("--syntactic-n", type=int, default=sizes.syntactic_per_phenomenon,
                        help="BLiMP pairs per phenomenon (67 phenomena; default "
                        f"{sizes.syntactic_per_phenomenon})")
    parser.add_argument("--storycloze-n", type=int, default=sizes.storycloze,
                        help="stories for tStoryCloze and sStoryCloze (default "
                        f"{sizes.storycloze})")
    parser.add_argument("--no-balance", action="store_true",
                        help="score every pair, even where the tokenizer makes the good item "
                        "shorter more often than longer (default: drop the excess, see docs/eval.md)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the untrained reference (halves scoring time)")
    parser.add_argument("--dialogues", default="work/dialogues",
                        help="--suite duplex: two-channel dialogue corpus whose held-out "
                        "dialogues are played (default work/dialogues)")
    parser.add_argument("--max-dialogues", type=int, default=None,
                        help="--suite duplex: play only the first N held-out dialogues")
    parser.add_argument("--endpoint-ms", type=float, default=500.0,
                        help="--suite duplex, turn-based models: user silence (webrtcvad) that "
                        "ends a turn (default 500)")
    parser.add_argument("--yield-threshold", type=float, default=None,
                        help="--suite duplex, duplex models: stop speaking once P(the user holds "
                        "the floor) reaches this (default 0.1, chosen on duplex-tiny's valid "
                        "split; 1: only when it is the most probable decision)")
    parser.add_argument("--split", default="heldout",
                        help="--suite duplex: dialogue split to play (default heldout; valid to "
                        "calibrate decoding settings on training voices)")
    prosody = parser.add_argument_group(
        "prosody suite", "--suite prosody: continuations of held-out prompts (needs --corpus); "
        "log-F0 min-MAE, F0 std, prompt/continuation mean-F0 correlation, style preservation")
    prosody.add_argument("--tokens", default=None,
                         help="token dataset with the model's streams (default: its training one)")
    prosody.add_argument("--style-classifier", default=None,
                         help="`speechlm prosody style-classifier` directory (style preservation)")
    prosody.add_argument("--prompts", type=int, default=20, help="held-out prompts (default 20)")
    prosody.add_argument("--samples", type=int, default=20,
                         help="continuations per prompt (default 20)")
    codec = parser.add_argument_group(
        "codec LM suites", "--suite tts,continuation,asr: a codec LM run dir (VALL-E, a codec-*-tiny "
        "layout, AudioLM, VioLA) on the held-out voices of --corpus (required): zero-shot TTS WER "
        "and speaker similarity to the prompt vs other speakers, continuation of held-out prompts, "
        "speech -> phonemes error rate; run on their own")
    codec.add_argument("--items", type=int, default=10, help="held-out items (default 10)")
    codec.add_argument("--prompt-seconds", type=float, default=3.0,
                       help="voice / continuation prompt seconds (default 3)")
    codec.add_argument("--continue-seconds", type=float, default=2.0,
                       help="seconds to continue (default 2)")
    codec.add_argument("--temperature", type=float, default=1.0)
    codec.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print results.json to stdout")
    parser.set_defaults(handler=_eval)


def _prosody(args: argparse.Namespace) -> dict:
    from speechlm.core.errors import ConfigError
    from speechlm.eval.prosody import ProsodyEvalConfig, evaluate_prosody

    if not args.corpus:
        raise ConfigError("--suite prosody needs --corpus (its held-out audio and style labels)")
    config = ProsodyEvalConfig(args.corpus, args.tokens, args.vocoder, args.style_classifier,
                               prompts=args.prompts, samples=args.samples, seed=args.seed,
                               show_progress=not args.json)
    entry = evaluate_prosody(args.model, config, args.out)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**results, "prosody": entry}, indent=2), encoding="utf-8")
    return entry


def _print_prosody(args: argparse.Namespace, entry: dict) -> int:
    if args.json:
        print(json.dumps({"prosody": entry}, indent=2))
        return 0
    print(f"prosody ({entry['prompts']} prompts x {entry['samples']} samples; F0 from "
          f"{entry['f0_source']}):")
    for key in ("logf0_min_mae", "f0_std", "f0_prompt_corr", "style_preservation"):
        e = entry[key]
        if e.get("value") is None:
            print(f"  {key:20s} -  {e.get('skipped', '')}")
            continue
        extra = "".join(f", {k} {e[k]:.3f}" for k in ("reference", "chance") if e.get(k) is not None)
        print(f"  {key:20s} {e['value']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]{extra}")
    print(f"wrote {args.out}/results.json and {entry.get('plot', 'no plot')}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from speechlm.core.errors import ConfigError
    from speechlm.eval.harness import EvalConfig, evaluate

    suite = tuple(s.strip() for s in args.suite.split(",") if s.strip())
    if "duplex" in suite:
        return _eval_duplex(args, suite)
    from speechlm.eval.codec_lm import SUITES as CODEC_SUITES

    if set(CODEC_SUITES) & set(suite):
        return _eval_codec_lm(args, suite)
    prosody = _prosody(args) if "prosody" in suite else None
    suite = tuple(s for s in suite if s != "prosody")
    if prosody is not None and not suite and not args.pairs:
        return _print_prosody(args, prosody)
    if not suite and not args.pairs:
        raise ConfigError("--suite is empty and no --pairs file was given: nothing to evaluate")
    config = EvalConfig(suite=suite, pairs_files=tuple(args.pairs), tokenizer_dir=args.tokenizer,
                        corpus_dir=args.corpus, cache_dir=args.cache, seed=args.seed,
                        dedup=not args.no_dedup, reference=not args.no_reference,
                        balance=not args.no_balance,
                        sizes=SuiteSizes(args.lexical_n, args.syntactic_n, args.storycloze_n),
                        modality=args.modality, word_n=args.word_n, vocoder_dir=args.vocoder)
    results = evaluate(args.model, config, args.out)
    if prosody is not None:  # evaluate() rewrote results.json: add the prosody entry back
        path = Path(args.out) / "results.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "prosody": prosody}, indent=2))
        _print_prosody(args, prosody)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    from speechlm.eval.report import format_entry

    table = Table(title=f"{args.model} ({results['kind']} LM)")
    for column in ("benchmark", "n", "accuracy [95% CI]", "per token", "untrained [95% CI]"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for name, e in results["benchmarks"].items():
        ref = e.get("untrained")
        table.add_row(name, str(e["n"]), format_entry(e), f"{e['accuracy_mean']:.3f}",
                      format_entry(ref) if ref else "–")
    Console().print(table)
    print(f"wrote {args.out}/results.json, report.md, index.html ({results['seconds']:.1f} s)")
    return 0


def _eval_duplex(args: argparse.Namespace, suite: tuple[str, ...]) -> int:
    from speechlm.core.errors import ConfigError
    from speechlm.eval.duplex import (DuplexConfig, evaluate_duplex, heldout_dialogues,
                                      write_duplex_results)

    if suite != ("duplex",) or args.pairs:
        raise ConfigError("--suite duplex runs on its own (it plays dialogues, the other suites "
                          "score pairs); run them separately")
    config = DuplexConfig(endpoint_ms=args.endpoint_ms, max_dialogues=args.max_dialogues,
                          yield_threshold=args.yield_threshold)
    dialogues = heldout_dialogues(args.dialogues, split=args.split, limit=args.max_dialogues)
    result = evaluate_duplex(args.model, dialogues, args.vocoder, config, seed=args.seed)
    write_duplex_results(result, args.out, args.model, dialogues)
    if args.json:
        print(json.dumps({"duplex": result["duplex"]}, indent=2))
    else:
        for key, value in result["duplex"].items():
            print(f"{key:38s} {value}")
        print(f"wrote {args.out}/results.json, run.json, report.md, timeline.png")
    return 0


def _eval_codec_lm(args: argparse.Namespace, suite: tuple[str, ...]) -> int:
    from speechlm.core.errors import ConfigError
    from speechlm.eval.codec_lm import SUITES, CodecEvalConfig, evaluate_codec_lm

    others = [s for s in suite if s not in SUITES]
    if others or args.pairs:
        raise ConfigError(f"--suite tts/continuation/asr (codec LMs) run on their own; run "
                          f"{others or '--pairs'} separately")
    if not args.corpus:
        raise ConfigError("--suite tts/continuation/asr needs --corpus (its held-out voices)")
    config = CodecEvalConfig(args.corpus, args.items, args.prompt_seconds, args.continue_seconds,
                             args.temperature, args.top_k)
    entry = evaluate_codec_lm(args.model, suite, config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**results, "codec_lm": entry}, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps({"codec_lm": entry}, indent=2))
        return 0
    for name in SUITES:
        if name in entry:
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in entry[name].items()
                                          if isinstance(v, float)))
    for name, base in entry.get("baselines", {}).items():
        gap = "-" if base["sim_gap"] is None else f"{base['sim_gap']:.3f}"
        print(f"baseline {name}: wer {base['wer']:.3f}, sim_gap {gap}")
    print(f"wrote {path}")
    return 0
