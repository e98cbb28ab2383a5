"""Synthesis speed and statistics of `speechlm corpus synth-dialogue`.

Synthesizes the same corpus (default 0.25 h, 12 + 4 held-out voices, seed 1) with 2 worker
processes and, as the baseline in the same run, with 1; speed is dialogue seconds (one timeline,
two channels) per wall second. Checks that both corpora are identical record for record and
writes the corpus statistics (turns, overlaps, backchannels, interruptions, non-query share,
gap distribution) next to the speed. Writes benchmarks/results/dialogue_synth.json and a plot of
the gaps, benchmarks/results/dialogue_synth.png.

    python benchmarks/dialogue_synth.py [--hours 0.25]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from speechlm.data.dialogue import DialogueCorpus, synthesize_dialogues  # noqa: E402


def speed(out: Path, workers: int, config: dict) -> tuple[float, DialogueCorpus]:
    start = time.perf_counter()
    corpus = synthesize_dialogues(out, workers=workers, show_progress=False, **config)
    elapsed = time.perf_counter() - start
    return corpus.stats()["hours"] * 3600 / elapsed, corpus


def plot(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in zip(axes, ("user_to_system", "system_to_user"),
                              ("user end -> system start", "system end -> user start")):
        hist = stats["gaps_s"][key]["histogram"]
        edges = hist["edges_s"]
        ax.bar(edges[:-1], hist["counts"], width=[b - a for a, b in zip(edges, edges[1:])],
               align="edge", edgecolor="black")
        ax.axvline(0, color="red", lw=1)
        ax.set(title=f"{title} (n={stats['gaps_s'][key]['n']})", xlabel="gap (s); < 0 = overlap",
               ylabel="transitions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=0.25)
    args = parser.parse_args()
    config = {"hours": args.hours, "voices": 12, "heldout_voices": 4, "seed": 1}
    load_before = os.getloadavg()[0]  # other jobs on the machine: the ratio is what to quote
    with tempfile.TemporaryDirectory() as tmp:
        single, one = speed(Path(tmp) / "w1", 1, config)
        parallel, two = speed(Path(tmp) / "w2", 2, config)
        identical = list(one) == list(two)
        stats = two.stats()
    png = RESULTS / "dialogue_synth.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(stats, png)
    path = write_result("dialogue_synth", {**config, "workers": 2}, parallel, single,
                        "x real time (dialogue s / wall s); baseline = 1 worker",
                        identical_1_vs_2_workers=identical, stats=stats, plot=png.name,
                        load_average_1min=[load_before, os.getloadavg()[0]])
    gaps = stats["gaps_s"]["user_to_system"]
    print(f"dialogue synthesis: {parallel:.0f}x real time with 2 workers, {single:.0f}x with 1 "
          f"(ratio {parallel / single:.2f}); identical: {identical}")
    print(f"{stats['dialogues']} dialogues, {stats['hours']:.3f} h; turns {stats['turns']}, "
          f"overlaps {stats['overlaps']}, backchannels {stats['backchannels']}, interruptions "
          f"{stats['interruptions']}, non-query {stats['non_query']}; reply gap median "
          f"{gaps['median']:.2f} s; wrote {path}")


if __name__ == "__main__":
    main()
