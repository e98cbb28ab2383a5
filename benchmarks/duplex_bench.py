"""Full-duplex benchmark: dgslm-tiny and duplex-tiny vs the turn-based baseline, 3 seeds each.

One invocation trains what is missing and scores every run with the same offline duplex benchmark
(`speechlm eval --suite duplex`, webrtcvad, simulated real time, held-out dialogues):

* ``reference``: the recorded system channel of the dialogues (the corpus script; no model);
* ``turn-based``: ``gslm-tiny`` (continuation LM on the same tokenizer's units) in the Session,
  end of turn by a 500 ms webrtcvad endpoint, barge-in by the Session's energy detector;
* ``dgslm-tiny`` and ``duplex-tiny``: the duplex models, frame by frame.

Each run is one `speechlm eval` process (``--jobs`` at a time, one torch thread each). Frame
compute is recorded as wall time (inflated by whatever else runs on the machine) and as the
frame's thread CPU time; both are reported against the 20 ms frame, which is the baseline of the
real-time ratio. Writes ``benchmarks/results/duplex.json`` and ``duplex.png``: per run, and per
system the mean, min, max and 95 % t interval over seeds of every figure (``recipe_matrix.interval``,
as every recipe reports), plus the stop latencies of all seeds' barge-ins pooled, with a 95 %
bootstrap interval of their p95 that resamples whole dialogues (a run's barge-ins in one dialogue
are not independent). ``--systems`` and ``--name`` score a subset under another name.
The README's table is every held-out dialogue (71), so that p95 rests on 30-50 barge-ins per
run rather than the 10-20 of a 22-dialogue subset.

    python benchmarks/duplex_bench.py --work work --vocoder work/vocoder --dialogues 71 --jobs 2
    python benchmarks/duplex_bench.py --work work --systems duplex-tiny --dialogues 4 --name smoke

Missing runs are trained by `speechlm train` subprocesses (``train_seed``: one thread each, run
dirs ``WORK/runs/SYSTEM-sSEED``), so runs trained beforehand, e.g. two at a time on 2 cores, are
found and reused; the summaries use ``recipe_matrix.interval`` like every recipe's report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
SYSTEMS = ("turn-based", "dgslm-tiny", "duplex-tiny")
BASELINE_OVERRIDES = ["tokenizer_features=mfcc", "tokenizer_units=50", "max_steps=300",
                      "batch_size=8", "eval_every=20"]
KEYS = ("interruption_stop_latency_p50_ms", "interruption_stop_latency_p95_ms", "interruptions",
        "interruption_stopped_200ms", "interruption_stop_latency_vad_p95_ms",
        "turn_taking_latency_ms", "takeover_rate_pause",
        "backchannel_rate", "silence_query_accuracy", "false_response_rate",
        "frame_compute_p95_ms", "frame_cpu_p95_ms", "frame_cpu_p95_over_frame", "reply_wer")


def speechlm(*args: str) -> list[str]:
    return [sys.executable, "-W", "ignore", "-m", "speechlm", *args]


def train_seed(recipe: str, seed: int, work: Path) -> Path:
    """Train ``recipe`` with ``seed`` unless its run dir holds a model; returns the run dir."""
    out = work / "runs" / f"{recipe}-s{seed}"
    if (out / "model.safetensors").is_file():
        return out
    config = "gslm-tiny" if recipe == "turn-based" else recipe
    extra = BASELINE_OVERRIDES if recipe == "turn-based" else []
    common = [f"corpus_dir={work}/corpus", f"tokenizer_dir={work}/tokenizer-mfcc50",
              f"units_dir={work}/units-mfcc50"]
    if recipe != "turn-based":
        common += [f"dialogue_dir={work}/dialogues", f"tokens_dir={work}/dialogue-tokens-mfcc50"]
    subprocess.run(speechlm("train", "--config", f"configs/recipes/{config}.yaml", *common, *extra,
                            f"output_dir={out}", f"seed={seed}", "threads=1", "progress=false"),
                   cwd=ROOT, check=True)
    return out


def evaluate(model: str | None, out: Path, args: argparse.Namespace) -> tuple[dict, list]:
    """One `speechlm eval --suite duplex` process (the reference: in this process); its
    ``duplex`` entry and per dialogue the (onset, stop latency) of every barge-in."""
    if model is None:
        from speechlm.eval.duplex import DuplexConfig, evaluate_duplex, heldout_dialogues

        dialogues = heldout_dialogues(args.dialogue_dir, limit=args.dialogues)
        result = evaluate_duplex(None, dialogues, None, DuplexConfig(), show_progress=False)
    else:
        subprocess.run(speechlm("eval", "--suite", "duplex", "--model", model, "--vocoder",
                                args.vocoder, "--dialogues", args.dialogue_dir, "--max-dialogues",
                                str(args.dialogues), "--out", str(out)),
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        result = {**json.loads((out / "results.json").read_text()),
                  **json.loads((out / "run.json").read_text())}
    return result["duplex"], [p["stops"] for p in result["per_dialogue"]]


def pooled_stops(stops: list[list], reps: int = 2000, seed: int = 0) -> dict:
    """Stop latencies of every barge-in of every run pooled (``stops``: per dialogue of every
    run, its [onset, latency] pairs): n, p50, p95, share within 200 ms, and a 95 % bootstrap
    interval of p95 and of that share, resampling dialogues."""
    import numpy as np

    groups = [np.asarray([x for _, x in d]) * 1000 for d in stops if d]
    if not groups:
        return {"n": 0}
    flat = np.concatenate(groups)
    rng = np.random.default_rng(seed)
    p95, within = [], []
    for _ in range(reps):
        pick = np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        p95.append(np.percentile(pick, 95))
        within.append(np.mean(pick <= 200))
    return {"n": int(flat.size), "dialogues": len(groups),
            "p50_ms": round(float(np.median(flat)), 1),
            "p95_ms": round(float(np.percentile(flat, 95)), 1),
            "p95_ci95_ms": [round(float(np.percentile(p95, q)), 1) for q in (2.5, 97.5)],
            "stopped_200ms": round(float(np.mean(flat <= 200)), 4),
            "stopped_200ms_ci95": [round(float(np.percentile(within, q)), 4) for q in (2.5, 97.5)]}


def aggregate(runs: dict[str, dict], stops: dict[str, list]) -> dict[str, dict]:
    """Per system: every key's mean, min, max and 95 % t interval over seeds, and the pooled
    barge-in stops (:func:`pooled_stops`)."""
    from recipe_matrix import interval

    systems: dict[str, list[str]] = {}
    for name in runs:
        systems.setdefault(name.rsplit("-s", 1)[0], []).append(name)
    out = {}
    for system, names in systems.items():
        out[system] = {"seeds": len(names)}
        for key in KEYS:
            values = [runs[n][key] for n in names if runs[n].get(key) is not None]
            if values:
                out[system][key] = {**interval(values), "min": min(values), "max": max(values)}
        out[system]["stops_pooled"] = pooled_stops([d for n in names for d in stops[n]])
    return out


def plot(summary: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("interruption_stop_latency_p95_ms", "turn_taking_latency_ms")
    fig, axes = plt.subplots(1, len(keys), figsize=(10, 3.2))
    for ax, key in zip(axes, keys):
        names = [n for n in summary if key in summary[n]]
        means = [summary[n][key]["mean"] for n in names]
        errs = [[m - summary[n][key]["ci95"][0] for n, m in zip(names, means)],
                [summary[n][key]["ci95"][1] - m for n, m in zip(names, means)]]
        ax.bar(names, means, yerr=errs, capsize=4, color="tab:blue")
        ax.set_title(f"{key} (95 % interval over seeds)", fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=15)
    axes[0].axhline(200, color="tab:red", lw=1, ls="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="work", help="corpus, tokenizer, dialogues, runs")
    parser.add_argument("--vocoder", default="work/vocoder")
    parser.add_argument("--dialogues", type=int, default=4, help="held-out dialogues per run")
    parser.add_argument("--jobs", type=int, default=10, help="eval processes at a time")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS,
                        help="trained systems to score (default all; the reference always)")
    parser.add_argument("--name", default="duplex",
                        help="results name: benchmarks/results/NAME.json and NAME.png")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    args.dialogue_dir = str(work / "dialogues")
    from speechlm.generation.duplex import YIELD_THRESHOLD
    start = time.time()
    models = {f"{recipe}-s{seed}": str(train_seed(recipe, seed, work))
              for recipe in args.systems for seed in SEEDS}
    load_before = os.getloadavg()[0]
    evals = work / f"{args.name}-eval"
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {name: pool.submit(evaluate, model, evals / name, args)
                   for name, model in {"reference": None, **models}.items()}
        results = {name: f.result() for name, f in futures.items()}
    runs = {name: r[0] for name, r in results.items()}
    summary = aggregate(runs, {name: r[1] for name, r in results.items()})
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(summary, RESULTS / f"{args.name}.png")
    record = {"name": args.name, "config": {"dialogues_per_run": args.dialogues, "seeds": SEEDS,
                                           "vad": "webrtcvad mode 2", "frame_ms": 20,
                                           "endpoint_ms": 500, "threads_per_run": 1,
                                           "yield_threshold": YIELD_THRESHOLD,
                                           "jobs": args.jobs, "systems": args.systems},
              "baseline": "turn-based (gslm-tiny + webrtcvad endpoint) and the frame duration "
                          "(20 ms) for compute",
              "summary": summary, "runs": runs, "plot": f"{args.name}.png", "machine": machine(),
              "load_average_1min": {"before_eval": load_before, "after": os.getloadavg()[0]},
              "seconds": round(time.time() - start, 1)}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
