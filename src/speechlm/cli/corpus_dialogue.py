"""`speechlm corpus synth-dialogue` and the dialogue view of `speechlm corpus info`."""

from __future__ import annotations

import argparse
import json

from speechlm.cli.corpus import print_stats


def add_synth_dialogue(csub: argparse._SubParsersAction) -> None:
    from speechlm.data.dialogue.config import DialogueConfig

    default = DialogueConfig()
    p = csub.add_parser(
        "synth-dialogue", help="synthesize two-channel dialogues (user + system) with espeak-ng",
        description="Synthesize two-voice conversations, one channel per voice (channel 0 user, "
        "1 system), from question/answer pairs and the quoted dialogue of public-domain novels: "
        "gaps, overlaps, pauses, backchannels, user interruptions (the system stops within "
        "--interrupt-stop-ms) and non-query audio (noise, a third voice, side talk) for silence "
        "mode. Every event is time-stamped; words are aligned per channel. Splits: train, valid, "
        "test, heldout (unseen voices). Deterministic for a seed.")
    p.add_argument("--out", required=True, help="output corpus directory")
    p.add_argument("--hours", type=float, default=0.25, help="audio to synthesize (default 0.25)")
    p.add_argument("--voices", type=int, default=12, help="training voices (default 12, >= 3)")
    p.add_argument("--heldout-voices", type=int, default=4,
                   help="voices only in the 'heldout' split (default 4; 0 or >= 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--text", default=None,
                   help="a .txt file or folder whose quoted speech replaces the shipped novels")
    options = {"overlap_prob": "replies that start before the query ends",
               "backchannel_prob": "turns of 2 s or more that get a backchannel",
               "user_backchannel_overlap": "user backchannels that start on a system word "
                                           "rather than in one of its pauses",
               "pause_prob": "turns with a hesitation pause mid-sentence",
               "interruption_prob": "responses the user interrupts",
               "early_interruption_prob": "interruptions 0.15-1 s into the response (the rest: later)",
               "non_query_prob": "exchanges preceded by non-query audio",
               "interrupt_stop_ms": "the system is silent at most this long after a barge-in"}
    for name, what in options.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(default, name),
                       help=f"{what} (default {getattr(default, name):g})")
    p.add_argument("--noise-std", type=float, default=default.noise_std,
                   help=f"dither noise std in both channels (default {default.noise_std:g})")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(handler=_synth_dialogue, dialogue_options=list(options) + ["noise_std"])


def _synth_dialogue(args: argparse.Namespace) -> int:
    from speechlm.data.dialogue.config import DialogueConfig
    from speechlm.data.dialogue.synth import synthesize_dialogues

    config = DialogueConfig(**{name: getattr(args, name) for name in args.dialogue_options})
    corpus = synthesize_dialogues(args.out, hours=args.hours, voices=args.voices,
                                  heldout_voices=args.heldout_voices, seed=args.seed,
                                  text=args.text, workers=args.workers, config=config)
    show_dialogue_stats(corpus.meta["stats"], f"dialogue corpus {args.out}", args.json)
    return 0


def dialogue_info(path: str, as_json: bool) -> int:
    from speechlm.data.dialogue import DialogueCorpus

    show_dialogue_stats(DialogueCorpus(path).validate(), f"dialogue corpus {path}", as_json)
    return 0


def show_dialogue_stats(stats: dict, title: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    print_stats(stats, title, items="dialogues")
    gaps = stats["gaps_s"]["user_to_system"]
    stop = stats["interruption_stop_ms"]
    print(f"turns: {stats['turns']['query']} queries, {stats['turns']['response']} responses; "
          f"pauses {stats['pauses']}, backchannels {stats['backchannels']}, interruptions "
          f"{stats['interruptions']}" + (f" (stop <= {stop['max']:.0f} ms)" if stop else ""))
    print("overlaps: " + ", ".join(f"{k} {v}" for k, v in stats["overlaps"].items()))
    print("non-query: " + (", ".join(f"{k} {v}" for k, v in stats["non_query"].items()) or "none")
          + f" ({100 * stats['non_query_share']['segments']:.0f}% of user-channel segments)")
    if gaps["n"]:
        print(f"reply gap (user end -> system start): median {gaps['median']:.2f} s, "
              f"p5 {gaps['p5']:.2f} s, p95 {gaps['p95']:.2f} s, "
              f"{100 * gaps['overlapped_share']:.0f}% start in overlap")
