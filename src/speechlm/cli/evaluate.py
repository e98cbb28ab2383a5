"""`speechlm eval`: sWUGGY/sBLIMP/StoryCloze-style pairwise benchmarks for speech and text LMs."""

from __future__ import annotations

import argparse
import json

from speechlm.eval.benchmarks import SuiteSizes


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval", help="score a speech or text LM on lexical/syntactic/storycloze pairs",
        description="Score a model on spoken (speech LMs) or text (text LMs) minimal pairs: "
        "lexical (word vs wuggy nonword), syntactic (BLiMP), storycloze (tStoryCloze-like random "
        "ending and sStoryCloze-like same-topic ending), and any BLiMP-format JSONL file. "
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
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the untrained reference (halves scoring time)")
    parser.add_argument("--dialogues", default="work/dialogues",
                        help="--suite duplex: two-channel dialogue corpus whose held-out "
                        "dialogues are played (default work/dialogues)")
    parser.add_argument("--vocoder", default=None,
                        help="--suite duplex: unit vocoder that voices the system (required)")
    parser.add_argument("--max-dialogues", type=int, default=None,
                        help="--suite duplex: play only the first N held-out dialogues")
    parser.add_argument("--endpoint-ms", type=float, default=500.0,
                        help="--suite duplex, turn-based models: user silence (webrtcvad) that "
                        "ends a turn (default 500)")
    parser.add_argument("--json", action="store_true", help="print results.json to stdout")
    parser.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from speechlm.core.errors import ConfigError
    from speechlm.eval.harness import EvalConfig, evaluate

    suite = tuple(s.strip() for s in args.suite.split(",") if s.strip())
    if "duplex" in suite:
        return _eval_duplex(args, suite)
    if not suite and not args.pairs:
        raise ConfigError("--suite is empty and no --pairs file was given: nothing to evaluate")
    config = EvalConfig(suite=suite, pairs_files=tuple(args.pairs), tokenizer_dir=args.tokenizer,
                        corpus_dir=args.corpus, cache_dir=args.cache, seed=args.seed,
                        dedup=not args.no_dedup, reference=not args.no_reference,
                        sizes=SuiteSizes(args.lexical_n, args.syntactic_n, args.storycloze_n))
    results = evaluate(args.model, config, args.out)
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
    config = DuplexConfig(endpoint_ms=args.endpoint_ms, max_dialogues=args.max_dialogues)
    dialogues = heldout_dialogues(args.dialogues, limit=args.max_dialogues)
    result = evaluate_duplex(args.model, dialogues, args.vocoder, config, seed=args.seed)
    write_duplex_results(result, args.out, args.model, dialogues)
    if args.json:
        print(json.dumps({"duplex": result["duplex"]}, indent=2))
    else:
        for key, value in result["duplex"].items():
            print(f"{key:38s} {value}")
        print(f"wrote {args.out}/results.json, run.json, report.md, timeline.png")
    return 0
