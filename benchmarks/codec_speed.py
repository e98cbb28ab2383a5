"""Codec speed on CPU: encode+decode real-time factor and training steps/s, in one process.

    python benchmarks/codec_speed.py --corpus CORPUS [--codec DIR] [--threads 2] [--steps 20]
                                     [--name codec_speed]

* RTF = wall seconds / audio seconds to encode and decode (all codebooks) 20 held-out
  utterances, encode and decode also separately; the ratio is against the 0.05 target. The
  SEANet encoder/decoder architecture of the first codec (``encoder=seanet decoder=seanet``,
  untrained) is timed in the same process as a second reference (``seanet_baseline``).
* Training: ``train_codec`` for ``--steps`` steps twice (reconstruction-only steps, then steps
  with the adversarial losses on), each a fresh run with the default config; steps/s of the loop
  and the projected wall time of the default ``codec train`` budget (1000 steps, adversarial
  from step 800) against its 10-minute target.

Run it with ``taskset -c 0,1`` to pin it to two cores; the load average at the start is recorded,
since a shared machine inflates every wall time. CPU time (``time.process_time``, data loading
included for training) is reported beside wall time: on a machine shared by many jobs it is the
better estimate of what an idle machine would take with one thread.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from speechlm.core.threads import torch_threads  # noqa: E402
from speechlm.data.corpus import Corpus  # noqa: E402
from speechlm.tokenizers.codec import Codec, load_codec  # noqa: E402
from speechlm.tokenizers.codec.model import CodecModel  # noqa: E402
from speechlm.tokenizers.codec.train import CodecTrainConfig, train_codec  # noqa: E402


def coding_rtf(codec, clips: list[np.ndarray]) -> dict:
    codec.decode(codec.encode(clips[0]))  # warm up
    enc = dec = 0.0
    cpu = time.process_time()
    for clip in clips:
        t0 = time.perf_counter()
        codes = codec.encode(clip)
        t1 = time.perf_counter()
        codec.decode(codes)
        dec += time.perf_counter() - t1
        enc += t1 - t0
    cpu = time.process_time() - cpu
    seconds = sum(c.size for c in clips) / 16000
    return {"rtf": (enc + dec) / seconds, "encode_rtf": enc / seconds, "decode_rtf": dec / seconds,
            "cpu_rtf": cpu / seconds, "audio_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--codec", default=None, help="trained codec (default: a fresh default-size one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per phase")
    parser.add_argument("--name", default="codec_speed")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    default = CodecTrainConfig()
    if args.codec:
        codec = load_codec(args.codec)
    else:
        torch.manual_seed(0)
        codec = Codec(CodecModel(default.model_config()))
    clips = [u.samples() for _, u in zip(range(20), Corpus(args.corpus).utterances("heldout"))]
    torch.manual_seed(0)
    seanet = Codec(CodecModel(replace(default.model_config(), encoder="seanet", decoder="seanet")))
    with torch_threads(args.threads):
        speed = coding_rtf(codec, clips)
        seanet_speed = coding_rtf(seanet, clips)
    phases, cpu_phases = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for phase, adv_start in (("reconstruction", args.steps), ("adversarial", 0)):
            cfg = CodecTrainConfig(steps=args.steps, adv_start=adv_start, log_every=args.steps,
                                   save_every=args.steps, threads=args.threads, max_hours=0.05)
            cpu = time.process_time()
            out = train_codec(args.corpus, Path(tmp) / phase, cfg, threads=args.threads,
                              show_progress=False)
            cpu_phases[phase] = args.steps / (time.process_time() - cpu)  # data loading included
            phases[phase] = load_codec(out).info["training"]["steps_per_second"]
    def projected_minutes(rates: dict) -> float:
        return (default.adv_start / rates["reconstruction"]
                + (default.steps - default.adv_start) / rates["adversarial"]) / 60

    projected, projected_cpu = projected_minutes(phases), projected_minutes(cpu_phases)
    config = {"threads": args.threads, "codec": str(args.codec) if args.codec else "untrained default",
              "model": codec.config.to_dict(), "training_steps_timed": args.steps,
              "default_budget": {"steps": default.steps, "adv_start": default.adv_start,
                                 "batch": default.batch, "segment_seconds": default.segment_seconds},
              "load_average_at_start": round(load, 2)}
    path = write_result(args.name, config, speed["rtf"], 0.05,
                        "encode+decode wall s / audio s; baseline = the 0.05 target",
                        **{k: v for k, v in speed.items() if k != "rtf"},
                        seanet_baseline=seanet_speed,
                        train_steps_per_second=phases,
                        train_steps_per_cpu_second=cpu_phases,
                        default_train_minutes_projected=round(projected, 2),
                        default_train_cpu_minutes_projected=round(projected_cpu, 2),
                        default_train_minutes_target=10.0)
    print(f"encode+decode RTF {speed['rtf']:.4f} (CPU {speed['cpu_rtf']:.4f}; SEANet architecture "
          f"{seanet_speed['rtf']:.4f}, CPU {seanet_speed['cpu_rtf']:.4f}; target 0.05); training {phases['reconstruction']:.2f} "
          f"steps/s (reconstruction), {phases['adversarial']:.2f} steps/s (adversarial); default "
          f"budget projected {projected:.1f} min wall, {projected_cpu:.1f} min of CPU time "
          f"(target 10); load {load:.1f}; wrote {path}")


if __name__ == "__main__":
    main()
