"""Per-frame CPU of a duplex model in a Session: the lean backbone forward vs HF's, same frames.

    python benchmarks/duplex_frame_cost.py --model runs/duplex-tiny --vocoder work/vocoder \
        --dialogues work/dialogues [--seconds 60]

Two sessions of the same model and seed hear the same held-out dialogue frames, alternating frame
by frame (so machine load falls on both alike): one runs the backbone through HF's forward and
``DynamicCache`` (what duplex sessions ran before), the other through the lean incremental
forward (:mod:`speechlm.lm.incremental`, the default). Their outputs must be identical (the run
fails otherwise). Each frame's thread CPU time is recorded, split by whether the system was
speaking (a voiced frame also runs the streaming vocoder) or not, against the 20 ms frame.
Writes ``benchmarks/results/duplex_frame_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402


def percentiles(ms: list[float]) -> dict[str, float | int]:
    return {"frames": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2)} if ms else {"frames": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a duplex model directory")
    parser.add_argument("--vocoder", required=True)
    parser.add_argument("--dialogues", required=True, help="dialogue corpus (heldout split)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio heard per session")
    args = parser.parse_args()

    import torch

    from speechlm.data.dialogue.record import USER
    from speechlm.eval.duplex import FRAME, FRAME_S, heldout_dialogues
    from speechlm.generation.pipeline import Sampling, SpeechPipeline
    from speechlm.generation.sampling import Decoder
    from speechlm.generation.session import Session

    torch.set_num_threads(1)
    pipeline = SpeechPipeline.load(args.model, vocoder_dir=args.vocoder, need_tokenizer=True)
    sessions = {name: Session(pipeline, Sampling(100, 0.8, 20), seed=0) for name in ("hf", "lean")}
    sessions["hf"].duplex.decoder = Decoder(pipeline.lm.model, lean=False)
    assert sessions["lean"].duplex.decoder.lean is not None, "the model does not run lean"
    frames_left = int(args.seconds / FRAME_S)
    cpu = {name: {"speaking": [], "other": []} for name in sessions}
    for dialogue in heldout_dialogues(args.dialogues):
        if frames_left <= 0:
            break
        user = dialogue.samples()[USER]
        for session in sessions.values():
            session.reset()
        for i in range(min(user.size // FRAME, frames_left)):
            frame = user[i * FRAME:(i + 1) * FRAME]
            outs = {}
            for name, session in sessions.items():
                start = time.thread_time()
                outs[name] = session.push(frame).audio
                kind = "speaking" if session.state == "speaking" else "other"
                cpu[name][kind].append(1000 * (time.thread_time() - start))
            if not np.array_equal(outs["hf"], outs["lean"]):
                raise SystemExit(f"{dialogue.id} frame {i}: lean and HF sessions diverged")
            frames_left -= 1
    result = {name: {kind: percentiles(ms) for kind, ms in parts.items()}
              | {"all": percentiles(parts["speaking"] + parts["other"])}
              for name, parts in cpu.items()}
    ratio = {f"{kind}_p95": round(result["lean"][kind]["p95_ms"] / result["hf"][kind]["p95_ms"], 3)
             for kind in ("all", "speaking", "other") if result["hf"][kind]["frames"]}
    record = {"name": "duplex_frame_cost", "model": str(Path(args.model).resolve()),
              "frame_ms": FRAME_S * 1000, "seconds": args.seconds, "threads": 1,
              "baseline": "the same session on HF's backbone forward, same frames, same process",
              "cpu_ms": result, "lean_over_hf": ratio,
              "all_p95_over_frame": round(result["lean"]["all"]["p95_ms"] / (FRAME_S * 1000), 3),
              "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "duplex_frame_cost.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
