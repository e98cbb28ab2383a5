"""Codec LMs on held-out voices: VALL-E (seeds), the single-model layouts at equal compute,
AudioLM hierarchical vs the mixed single-stage model, and VioLA (the delay model with a third,
speech -> phonemes task); writes ``results/codec_lm.json`` + a plot.

    .venv/bin/python benchmarks/codec_lm.py --work work [--steps 100] [--seeds 0 1 2] [--items 10]

``--work`` holds (or gets) the inputs the recipes name: ``corpus``, ``tok-whisper``, ``codec``,
``codec-tokens``; runs go to ``WORK/bench/<name>`` (a finished run is reused). Every recipe trains
``--steps`` steps of ``--batch`` blocks of its ``seq_len`` positions, so all layouts get the same
compute (VALL-E's two stages may get ``--valle-steps``). Every system trains once per ``--seeds``
seed; each metric is also given as the mean and 95 % t interval over seeds (``over_seeds``).
Evaluation on the ``heldout`` split (voices never seen in training): for item i the text
of utterance i, the voice prompt = the first ``prompt_seconds`` of another utterance of the same
speaker. Baselines in the same run: the original audio and its codec resynthesis (the ceiling).

TTS: Whisper tiny.en WER against the text; Resemblyzer similarity of the output to its prompt vs
to the prompts of the other held-out speakers (bootstrap 95 % intervals over items); codec
frames/s and RTF of the LMs. Continuation (3 s prompt, 2 s more; held-out utterances of at least
4 s): mel distance and WER against the utterance's true next 2 s, similarity to the prompt,
frames/s. VioLA: phoneme error rate of its speech -> phonemes task on the held-out targets, next
to the same hypotheses scored against the wrong item's phonemes (a model that ignores the audio
scores alike), and its TTS next to the two-task delay model trained with the same compute.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "configs" / "recipes"
LAYOUTS = ("flatten", "parallel", "delay", "depth")


def finished(out: Path) -> bool:
    return (out / "speechlm.json").is_file() or (out / "tts.json").is_file()


def input_overrides(work: Path) -> list[str]:
    """The recipe keys that point every run at the inputs in ``work``."""
    return [f"corpus_dir={work}/corpus", f"tokenizer_dir={work}/tok-whisper",
            f"codec_dir={work}/codec", f"tokens_dir={work}/codec-tokens"]


def train(name: str, config: str, work: Path, args, steps: int, *extra: str):
    """Start training ``name`` (a Popen), or None when its run dir exists (done, or being trained
    by another invocation of this script: then it is waited for)."""
    out = work / "bench" / name
    if out.exists() or Path(f"{out}.log").exists():
        return None
    cmd = [sys.executable, "-m", "speechlm", "train", "--config", str(RECIPES / config),
           f"max_steps={steps}", f"batch_size={args.batch}", f"output_dir={out}",
           *input_overrides(work), "progress=false", "plot=false", "threads=1",
           f"save_every={steps}", f"eval_every={max(1, steps // 2)}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{out}.log", "w"))


def plan_runs(args) -> list[tuple[str, str, int, str]]:
    """(run name, recipe file, steps, seed override) for the requested ``--parts``."""
    plan = []
    if "valle" in args.parts:
        plan += [(f"valle-s{s}", "valle-tiny.yaml", args.valle_steps or args.steps, f"seed={s}")
                 for s in args.seeds]
    if "layouts" in args.parts:
        plan += [(f"codec-{lay}-s{s}", f"codec-{lay}-tiny.yaml", args.steps, f"seed={s}")
                 for s in args.seeds for lay in LAYOUTS]
    if "hierarchy" in args.parts:
        plan += [(f"{name}-s{s}", f"{name}-tiny.yaml", args.steps, f"seed={s}")
                 for s in args.seeds for name in ("audiolm", "codec-delay")]
    if "viola" in args.parts:
        plan += [(f"{name}-s{s}", f"{name}-tiny.yaml", args.steps, f"seed={s}")
                 for s in args.seeds for name in ("viola", "codec-delay")]
    return list(dict.fromkeys(plan))


def build_inputs(work: Path) -> None:
    """Corpus, tokenizer, codec and codec tokens, built once here when missing (parallel training
    runs would otherwise race to build them)."""
    from speechlm.core.config import load_config
    from speechlm.lm.config import TrainConfig
    from speechlm.pipeline import ensure_codec_tokens

    cfg = load_config(TrainConfig, RECIPES / "valle-tiny.yaml", input_overrides(work))
    ensure_codec_tokens(cfg, progress=False)


def train_all(work: Path, args) -> dict[str, Path]:
    """Train the runs the requested ``--parts`` need, ``--jobs`` at a time; returns their dirs."""
    build_inputs(work)
    (work / "bench").mkdir(parents=True, exist_ok=True)
    plan = plan_runs(args)
    running = []
    for name, config, steps, seed in plan:
        while len([p for p in running if p.poll() is None]) >= args.jobs:
            time.sleep(2)
        proc = train(name, config, work, args, steps, seed)
        if proc is not None:
            running.append(proc)
    runs = {name: work / "bench" / name for name, *_ in plan}
    while not all(finished(out) for out in runs.values()):
        failed = [p for p in running if p.poll() not in (None, 0)]
        if failed:
            raise SystemExit(f"a training run failed: see the logs in {work}/bench")
        time.sleep(5)
    return runs


def train_tok_s(run: Path) -> float:
    rates = [json.loads(line).get("tok_s") for line in (run / "metrics.jsonl").read_text().splitlines()]
    return float(np.median([r for r in rates if r]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work"))
    parser.add_argument("--steps", type=int, default=100, help="training steps of every layout / "
                        "hierarchy run (equal compute)")
    parser.add_argument("--valle-steps", type=int, default=None, help="VALL-E's steps per stage "
                        "(default: --steps)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--name", default="codec_lm")
    parser.add_argument("--parts", default="valle,layouts,hierarchy,viola",
                        help="comma-separated sections to train (or wait for) and evaluate")
    args = parser.parse_args()
    args.parts = args.parts.split(",")

    import torch

    from speechlm.eval.asr import transcribe
    from speechlm.eval.codec_lm import (CodecEvalConfig, asr_metrics, baselines as resynthesis_baselines,
                                        continuation_items, continuation_metrics, heldout_items,
                                        tts_metrics)
    from speechlm.eval.speaker import speaker_encoder
    from speechlm.generation.codec_tts import CodecGenerator
    from speechlm.lm.codec.data import CodecDataset

    runs = train_all(args.work, args)
    torch.set_num_threads(1)
    embed = speaker_encoder().embed
    cfg = CodecEvalConfig(args.work / "corpus", args.items, args.prompt_seconds, 2.0,
                          args.temperature, args.top_k)
    evals = heldout_items(cfg.corpus_dir, cfg.items)
    cont_evals = continuation_items(cfg)
    first = CodecGenerator(next(iter(runs.values())))
    codec = first.codec
    baselines = resynthesis_baselines(first, evals, embed, transcribe)
    results = {"baselines": baselines, "valle": {}, "layouts": {}, "viola": {}, "hierarchy": {}}
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}

    def save(done: str) -> Path:
        """(Re)write the JSON after each section, so a cut-short run keeps what it measured."""
        tts_wer = ([v["wer"] for k, v in results["valle"].items() if k != "over_seeds"]
                   or [v["over_seeds"]["tts"]["wer"]["mean"] for v in results["layouts"].values()] or [1.0])
        return write_result(args.name, config, float(np.mean(tts_wer)),
                            baselines["codec_resynthesis"]["wer"],
                            "Whisper WER of TTS on held-out voices (mean over VALL-E seeds, else over "
                            "layouts); baseline = codec resynthesis of the ground truth", codec=str(codec.path),
                            completed=done, **results)

    for seed in args.seeds if "valle" in args.parts else []:
        results["valle"][f"seed{seed}"] = tts_metrics(CodecGenerator(runs[f"valle-s{seed}"]), evals,
                                                      cfg, embed, transcribe)
    if results["valle"]:
        results["valle"]["over_seeds"] = over_seeds(list(results["valle"].values()))
    save("valle")
    for lay in LAYOUTS if "layouts" in args.parts else []:
        per_seed = {}
        for seed in args.seeds:
            run = runs[f"codec-{lay}-s{seed}"]
            gen = CodecGenerator(run)
            per_seed[f"seed{seed}"] = {
                "tts": tts_metrics(gen, evals, cfg, embed, transcribe),
                "continuation": continuation_metrics(gen, cont_evals, cfg, embed, transcribe),
                "train_tok_s": train_tok_s(run),
                "best_valid_loss": json.loads((run / "best.json").read_text())["best_valid_loss"]}
        results["layouts"][lay] = {**per_seed, "over_seeds": over_seeds(list(per_seed.values()))}
        save(f"layouts up to {lay}")
    viola = {}
    for seed in args.seeds if "viola" in args.parts else []:
        gen = CodecGenerator(runs[f"viola-s{seed}"])
        two_task = results["layouts"].get("delay", {}).get(f"seed{seed}", {}).get("tts") or \
            tts_metrics(CodecGenerator(runs[f"codec-delay-s{seed}"]), evals, cfg, embed, transcribe)
        viola[f"seed{seed}"] = {"asr": asr_metrics(gen, evals),
                                "tts": tts_metrics(gen, evals, cfg, embed, transcribe),
                                "tts_two_task_delay": two_task}
    if viola:
        results["viola"] = {**viola, "over_seeds": over_seeds(list(viola.values()))}
        save("viola")
    if "hierarchy" not in args.parts:
        return finish(save("all requested parts"), results, args)
    ds = CodecDataset(args.work / "codec-tokens")
    T = float(np.mean([r.codes.shape[1] for r in ds.records("train")]))
    K = ds.meta["n_codebooks"]
    systems = {"audiolm": {"stages": 3, "sequence_steps_per_utterance": {
                   "semantic": T, "coarse (units prefix + delay codes)": 2 * T + 1,
                   "fine (NAR, one pass per codebook)": T}},
               "mixed_single_stage": {"stages": 1, "model": "codec-delay",
                                      "sequence_steps_per_utterance": {"delay over K codebooks": T + K - 1}}}
    results["hierarchy"] = {"mean_frames_per_utterance": T, "n_codebooks": K}
    for system, prefix in (("audiolm", "audiolm"), ("mixed_single_stage", "codec-delay")):
        per_seed = {f"seed{seed}": {"continuation": continuation_metrics(
            CodecGenerator(runs[f"{prefix}-s{seed}"]), cont_evals, cfg, embed, transcribe)} for seed in args.seeds}
        results["hierarchy"][system] = {**systems[system], **per_seed,
                                        "over_seeds": over_seeds(list(per_seed.values()))}
    finish(save("all requested parts"), results, args)


def over_seeds(per_seed: list[dict]) -> dict:
    """Every numeric leaf of the per-seed results as mean + 95 % t interval over seeds."""
    from recipe_matrix import interval

    first = per_seed[0]
    out = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = over_seeds([r[key] for r in per_seed])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = interval([float(r[key]) for r in per_seed])
    return out


def finish(path: Path, results: dict, args) -> None:
    if results["layouts"]:
        plot(results, RESULTS / f"{args.name}.png")
    print(path)


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for lay, r in results["layouts"].items():
        tts, cont = r["over_seeds"]["tts"], r["over_seeds"]["continuation"]
        ax[0].scatter(tts["frames_per_s"]["mean"], tts["wer"]["mean"], label=lay)
        ax[1].scatter(cont["frames_per_s"]["mean"], cont["mel_distance"]["mean"], label=lay)
    ax[0].set(xlabel="codec frames/s (LM, 1 thread)", ylabel="TTS WER (Whisper)", title="TTS")
    ax[1].set(xlabel="codec frames/s (LM, 1 thread)", ylabel="mel distance to truth", title="continuation")
    for a in ax:
        a.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
