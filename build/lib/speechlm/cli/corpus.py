"""`speechlm corpus synth|synth-dialogue|import|info`."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table


def register(sub: argparse._SubParsersAction) -> None:
    from speechlm.cli.corpus_dialogue import add_synth_dialogue  # imports print_stats from here

    parser = sub.add_parser("corpus", help="build, import and inspect spoken corpora",
                            description="Build, import and inspect spoken corpora.")
    csub = parser.add_subparsers(dest="corpus_command", metavar="<action>", required=True)

    synth = csub.add_parser("synth", help="synthesize a multi-voice corpus with espeak-ng",
                            description="Synthesize sentences from public-domain text (default: "
                            "the texts shipped with speechlm) with many espeak-ng voices, with "
                            "word and phone alignments. Deterministic for a seed.")
    synth.add_argument("--out", required=True, help="output corpus directory")
    synth.add_argument("--text", default=None, help="a .txt file or a folder of them")
    synth.add_argument("--hours", type=float, default=0.25, help="audio to synthesize (default 0.25)")
    synth.add_argument("--voices", type=int, default=12, help="training voices (default 12)")
    synth.add_argument("--heldout-voices", type=int, default=3,
                       help="extra voices used only in the 'heldout' split (default 3)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    synth.add_argument("--noise-std", type=float, default=3e-3,
                       help="dither noise std added to the audio (default 3e-3)")
    synth.set_defaults(handler=_synth)
    add_synth_dialogue(csub)

    imp = csub.add_parser("import", help="import LibriSpeech or audio+.txt folders",
                          description="Convert a LibriSpeech tree or a folder of audio files with "
                          "same-name .txt transcripts to a corpus (mono 16 kHz). Unusable files "
                          "are skipped and listed in OUT/rejects.jsonl.")
    imp.add_argument("src", help="source folder")
    imp.add_argument("--format", required=True, choices=["librispeech", "wavtxt"])
    imp.add_argument("--out", required=True, help="output corpus directory")
    imp.add_argument("--max-seconds", type=float, default=60.0, help="reject longer files")
    imp.add_argument("--heldout-speakers", type=int, default=0,
                     help="speakers moved to the 'heldout' split (default 0)")
    imp.add_argument("--strict", action="store_true", help="exit non-zero if any file is rejected")
    imp.add_argument("--seed", type=int, default=0)
    imp.set_defaults(handler=_import)

    info = csub.add_parser("info", help="validate a corpus (or dialogue corpus) and print its "
                           "statistics")
    info.add_argument("corpus", help="corpus directory")
    info.add_argument("--json", action="store_true", help="print a JSON object")
    info.set_defaults(handler=_info)


def print_stats(stats: dict, title: str, items: str = "utterances") -> None:
    table = Table(title=title)
    for column in ("split", items, "speakers", "hours"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, row in stats["splits"].items():
        table.add_row(split, str(row[items]), str(row["speakers"]), f"{row['hours']:.3f}")
    table.add_row("[bold]all", str(stats[items]), str(stats["speakers"]),
                  f"{stats['hours']:.3f}")
    Console().print(table)
    print(f"mean {items[:-1]} duration: {stats['mean_duration_s']:.2f} s")


def _synth(args: argparse.Namespace) -> int:
    from speechlm.data.synth import synthesize_corpus

    corpus = synthesize_corpus(args.out, hours=args.hours, voices=args.voices,
                               heldout_voices=args.heldout_voices, seed=args.seed, text=args.text,
                               workers=args.workers, noise_std=args.noise_std)
    print_stats(corpus.meta["stats"], f"corpus {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from speechlm.data.importers import import_corpus

    result = import_corpus(args.src, args.out, args.format, max_seconds=args.max_seconds,
                           heldout_speakers=args.heldout_speakers, seed=args.seed)
    print(f"imported {result.imported} files, rejected {len(result.rejects)} "
          f"(see {args.out}/rejects.jsonl)")
    for row in result.rejects:
        print(f"  rejected {row['path']}: {row['reason']}")
    if result.corpus is not None:
        print_stats(result.corpus.meta["stats"], f"corpus {args.out}")
    if result.imported == 0:
        print("error: nothing could be imported")
        return 1
    return 1 if args.strict and result.rejects else 0


def _info(args: argparse.Namespace) -> int:
    from speechlm.cli.corpus_dialogue import dialogue_info
    from speechlm.data.corpus import Corpus
    from speechlm.data.dialogue import is_dialogue_corpus

    if is_dialogue_corpus(args.corpus):
        return dialogue_info(args.corpus, args.json)

    corpus = Corpus(args.corpus)
    stats = corpus.validate()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print_stats(stats, f"corpus {args.corpus}")
    return 0
