"""Per-frame CPU of a served speech LM: the serving cost that does not depend on machine load.

    python benchmarks/serve_frame_cost.py --model DIR --vocoder DIR [--seconds 40] [--cores 2]

One session of the server's adapter (``speechlm.serve.models``, the core ``Session`` inside)
hears the clips ``serve_latency.py`` replays (espeak sentences, each followed by a pause the model
answers in) frame by frame in this process, on one torch thread, and the process CPU time of every
frame is recorded (BLAS helper threads included). Wall-clock latency on a shared machine measures
the other users; CPU time per frame does not, and it bounds the sessions a machine can serve:
``implied_realtime_sessions`` = floor(cores x frame_ms / CPU ms per frame) on idle cores.

Configurations, in one run on the same audio:

* ``before``: the server as it was first: numpy's BLAS at its default threads (one per core;
  k-means assignment multiplies a few vectors, and idle BLAS threads spin on busy cores), the
  core session's tokenizer chunk (5 unit frames), replies 10 units per step, heard units fed
  to the LM as each tokenizer call fixes them;
* ``blas1``: BLAS on one thread (``speechlm serve`` limits it to ``--threads``);
* ``listen240``: + 240 ms of audio tokenized per call (12 unit frames; the previous default);
* ``spread``: + replies generated as each frame's audio needs them, 2 units per step, vocoded
  once per frame (``--response-chunk`` 2);
* ``feed64``: + heard units fed to the LM 64 at a time and at the end of the turn;
* ``listen400``: + 400 ms tokenized per call (``--listen-chunk-ms`` 400);
* ``served``: the served defaults: + the lean incremental LM forward
  (:mod:`speechlm.lm.incremental`) instead of HF's forward with its ``DynamicCache``; every row
  above runs HF's forward.

Every frame runs slice by slice, as a worker process runs it (``ServedSession.slices``): each
row reports the whole call's CPU (what a worker that ran a call at once made the other sessions'
frames wait for; the ``cpu_ms_*`` and ``by_state`` ``cpu_ms_*`` figures), the CPU until the
frame's reply (``reply_ms_*``: the frame's own compute; the rest prepares the next frame) and the
longest slice (``slice_ms_max``: what another session's frame on the same worker waits behind at
most). ``worst_case`` sums them up for the served defaults.

``lean_vs_hf`` is the lean forward's ratio measured as the machine's load allows: two sessions
with the served defaults, one on HF's forward and one on the lean one, hear the same frames,
alternating which goes first frame by frame, and every frame's output (units, audio samples,
events, state) must be identical (the run fails otherwise); the ratios are lean / HF for the CPU
per frame, the turn-ending frame until its reply and whole, and the longest slice.

It also times one LM step (one new token with a 60-token KV cache) for B sessions, as B single
calls of HF's forward, B single calls of the lean forward and one HF call over a batch of B rows
(what batching sessions' steps would save), interleaved.
``value`` is the ``served`` CPU ms per frame, ``baseline`` the ``before`` one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from serve_latency import speech_clips  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from speechlm.generation.pipeline import Sampling  # noqa: E402
from speechlm.generation.sampling import Decoder  # noqa: E402
from speechlm.lm.incremental import IncrementalLlama  # noqa: E402
from speechlm.serve.models import load_model_factory  # noqa: E402

# BLAS threads, tokenizer chunk (unit frames), response chunk (units per step), feed chunk (heard
# ids per LM call), the lean LM forward; None: the served default
CONFIGS = {"before": (None, 5, 10, 1, False), "blas1": (1, 5, 10, 1, False),
           "listen240": (1, 12, 10, 1, False), "spread": (1, 12, None, 1, False),
           "feed64": (1, 12, None, None, False), "listen400": (1, None, None, None, False),
           "served": (1, None, None, None, True)}


def new_session(factory, lean: bool = True):
    """A served session; ``lean=False``: on HF's forward (the decoder the server had before)."""
    session = factory.new_session()
    if not lean:
        session.session.decoder = Decoder(factory.pipeline.lm.model, lean=False)
    return session


class Parts:
    """Process CPU ms of a served session's work by part, counted from :meth:`start`: its
    streaming tokenizer's calls, the LM's prefills (several ids) and steps (one id), the
    vocoder's calls; ``steps`` counts the LM steps."""

    def __init__(self, served) -> None:
        core = served.session
        self.ms: dict[str, float] = {}
        self.steps = 0
        self._wrap(core.listener, "_fix", lambda *args: "tokenizer")
        self._wrap(core.speaker, "_emit", lambda *args: "vocoder")
        self._wrap(core.decoder, "feed", lambda ids: "lm_step" if np.size(ids) == 1 else "lm_prefill")

    def start(self) -> None:
        self.ms, self.steps = {}, 0

    def _wrap(self, obj, name: str, part) -> None:
        call = getattr(obj, name)

        def timed(*args):
            start = time.process_time()
            try:
                return call(*args)
            finally:
                key = part(*args)
                self.ms[key] = self.ms.get(key, 0.0) + 1e3 * (time.process_time() - start)
                self.steps += key == "lm_step"

        setattr(obj, name, timed)


def frame_cost(session, frame: np.ndarray, parts: Parts | None = None) -> tuple:
    """One pushed frame run slice by slice, as a worker process runs it: its output and the
    process CPU ms of the whole call (what a worker without slices runs at once), of the part
    before its reply (the frame's own compute) and of its longest slice (what another session's
    frame on the same worker can wait behind); with ``parts``, also the reply's CPU by part
    (``other``: sampling and the session's own Python) and its LM steps."""
    whole = reply = longest = 0.0
    out = None
    if parts is not None:
        parts.start()
    steps = session.slices("push", frame)
    while True:
        start = time.process_time()
        item = next(steps, steps)  # the iterator itself: no slice left
        cost = 1e3 * (time.process_time() - start)
        whole, longest = whole + cost, max(longest, cost)
        if item is steps:
            break
        if item is not None:
            out, reply = item, whole
            if parts is not None:
                by_part = dict(parts.ms, other=reply - sum(parts.ms.values()),
                               lm_steps=parts.steps)
    key = "end_of_turn" if "end_of_turn" in out.events else out.state
    if parts is not None:
        return out, key, (whole, reply, longest), by_part
    return out, key, (whole, reply, longest)


def frame_costs(factory, frames: list[np.ndarray], tokenizer_chunk: int,
                response_chunk: int, feed_chunk: int, lean: bool) -> dict:
    """:func:`frame_cost` of every pushed frame, by the state the frame ended in (the frame that
    ended the turn and started the reply: ``end_of_turn``)."""
    factory = dataclasses.replace(factory, response_chunk=response_chunk, feed_chunk=feed_chunk,
                                  listen_chunk_ms=round(tokenizer_chunk * 1000 /
                                                        factory.pipeline.tokenizer.frame_rate))
    session = new_session(factory, lean)
    costs: dict[str, list[tuple[float, float, float]]] = {}  # state -> (whole, reply, slice)
    for frame in frames:
        _, key, cost = frame_cost(session, frame)[:3]
        costs.setdefault(key, []).append(cost)
    return summary(costs, factory.frame_ms)


def summary(costs: dict[str, list[tuple[float, float, float]]], frame_ms: float) -> dict:
    every = np.array([c for values in costs.values() for c in values])  # (frames, 3)
    whole, reply, longest = every.T
    return {"frames": len(every), "cpu_ms_per_frame": float(whole.mean()),
            "cpu_ms_p95": float(np.percentile(whole, 95)),
            "cpu_ms_p99": float(np.percentile(whole, 99)), "cpu_ms_max": float(whole.max()),
            "frames_over_frame_ms": int((whole > frame_ms).sum()),
            "reply_ms_p95": float(np.percentile(reply, 95)), "reply_ms_max": float(reply.max()),
            "slice_ms_max": float(longest.max()),
            "by_state": {s: {"frames": len(v), "cpu_ms_per_frame": float(np.mean(v, 0)[0]),
                             "cpu_ms_max": float(np.max(v, 0)[0]),
                             "reply_ms_per_frame": float(np.mean(v, 0)[1]),
                             "reply_ms_max": float(np.max(v, 0)[1]),
                             "slice_ms_max": float(np.max(v, 0)[2])}
                         for s, v in sorted(costs.items())}}


def lean_vs_hf(factory, frames: list[np.ndarray]) -> dict:
    """The served defaults on HF's forward and on the lean one, the same frames alternated
    (which session goes first swaps every frame); every frame's output must be identical. The
    turn-ending frames' CPU until the reply is also split by part (:class:`Parts`)."""
    sessions = {"hf": new_session(factory, lean=False), "lean": new_session(factory)}
    parts = {name: Parts(session) for name, session in sessions.items()}
    costs: dict[str, dict[str, list]] = {name: {} for name in sessions}
    eot_parts: dict[str, list[dict]] = {name: [] for name in sessions}
    for i, frame in enumerate(frames):
        order = list(sessions) if i % 2 else list(sessions)[::-1]
        outs = {}
        for name in order:
            outs[name], key, cost, by_part = frame_cost(sessions[name], frame, parts[name])
            costs[name].setdefault(key, []).append(cost)
            if key == "end_of_turn":
                eot_parts[name].append(by_part)
        hf, lean = outs["hf"], outs["lean"]
        if (hf.state, hf.tokens, hf.events, hf.text) != (lean.state, lean.tokens, lean.events,
                                                         lean.text) or \
                not np.array_equal(hf.audio, lean.audio):
            raise SystemExit(f"frame {i}: the lean forward's output differs from HF's")
    rows = {name: summary(c, factory.frame_ms) for name, c in costs.items()}
    for name, row in rows.items():  # mean per turn-ending frame, until its reply
        keys = sorted({k for p in eot_parts[name] for k in p})
        row["end_of_turn_reply_by_part"] = {k: round(float(np.mean([p.get(k, 0.0) for p in
                                                                    eot_parts[name]])), 2)
                                            for k in keys}
    hf, lean = rows["hf"], rows["lean"]
    eot_hf, eot_lean = hf["by_state"]["end_of_turn"], lean["by_state"]["end_of_turn"]
    ratios = {"cpu_ms_per_frame": lean["cpu_ms_per_frame"] / hf["cpu_ms_per_frame"],
              "end_of_turn_reply_ms": eot_lean["reply_ms_per_frame"] / eot_hf["reply_ms_per_frame"],
              "end_of_turn_call_ms": eot_lean["cpu_ms_per_frame"] / eot_hf["cpu_ms_per_frame"],
              "reply_ms_p95": lean["reply_ms_p95"] / hf["reply_ms_p95"],
              "slice_ms_max": lean["slice_ms_max"] / hf["slice_ms_max"]}
    return {"frames": len(frames), "outputs_identical": True, "hf": hf, "lean": lean,
            "ratio_lean_over_hf": {k: round(v, 3) for k, v in ratios.items()}}


def lm_step_costs(model, batches: tuple[int, ...], repeats: int = 20, rounds: int = 5) -> list[dict]:
    """CPU ms of one decoding step for B sessions: B calls of one row (HF's forward, the lean
    one) vs one HF call of B rows; each call appends a token to a 60-token cache, which is cut
    back to 60 before the next; the three alternate, ``rounds`` times, medians reported."""
    rows = []
    with torch.inference_mode():
        for b in batches:
            prompt = torch.randint(5, 100, (b, 60), generator=torch.Generator().manual_seed(0))
            cache = model(input_ids=prompt, use_cache=True).cache
            singles = [model(input_ids=prompt[i:i + 1], use_cache=True).cache for i in range(b)]
            leans = [IncrementalLlama(model) for _ in range(b)]
            for i, lean in enumerate(leans):
                lean.feed(prompt[i:i + 1])

            def one_by_one():
                for i, single in enumerate(singles):  # each session's step: one new token
                    model(input_ids=prompt[i:i + 1, :1], use_cache=True, cache=single)
                    single.crop(-1)

            def lean_one_by_one():
                for i, lean in enumerate(leans):
                    lean.feed(prompt[i:i + 1, :1])
                    lean.length = 60

            def batched():
                model(input_ids=prompt[:, :1], use_cache=True, cache=cache)
                cache.crop(-1)

            times: dict[str, list[float]] = {"hf": [], "lean": [], "batched": []}
            for _ in range(rounds):
                for name, fn in (("hf", one_by_one), ("lean", lean_one_by_one),
                                 ("batched", batched)):
                    fn()
                    start = time.process_time()
                    for _ in range(repeats):
                        fn()
                    times[name].append(1e3 * (time.process_time() - start) / repeats)
            separate, lean, one = (float(np.median(times[k])) for k in ("hf", "lean", "batched"))
            rows.append({"sessions": b, "separate_calls_cpu_ms": round(separate, 2),
                         "lean_separate_calls_cpu_ms": round(lean, 2),
                         "one_batched_call_cpu_ms": round(one, 2),
                         "lean_saving": round(separate / lean, 2),
                         "saving": round(separate / one, 2)})
    return rows


def worst_case(row: dict) -> dict:
    """The served defaults' longest calls: run at once (a worker without slices: other sessions'
    frames wait for all of it) vs until the frame's reply vs the longest slice."""
    eot = row["by_state"]["end_of_turn"]
    return {"call_ms_max": row["cpu_ms_max"], "reply_ms_max": row["reply_ms_max"],
            "slice_ms_max": row["slice_ms_max"], "end_of_turn_call_ms": eot["cpu_ms_per_frame"],
            "end_of_turn_reply_ms": eot["reply_ms_per_frame"],
            "end_of_turn_slice_ms_max": eot["slice_ms_max"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--vocoder", required=True)
    parser.add_argument("--seconds", type=float, default=40.0, help="audio heard per config")
    parser.add_argument("--cores", type=int, default=2, help="idle cores for the implied N")
    args = parser.parse_args()

    torch.set_num_threads(1)
    factory = load_model_factory(args.model, args.vocoder, sampling=Sampling(150, 0.8, 50))
    with threadpool_limits(1, user_api="blas"):
        factory.warmup()
    served = factory.tokenizer_chunk, factory.response_chunk, factory.feed_chunk
    clips = speech_clips()
    audio = np.concatenate(clips * math.ceil(args.seconds / sum(c.size / 16_000 for c in clips)))
    n = factory.frame_samples
    frames = [audio[i:i + n] for i in range(0, min(audio.size, int(args.seconds * 16_000)) - n + 1, n)]
    frame_ms = 1000 * n / factory.sample_rate
    results = {}
    for name, (blas, *chunks, lean) in CONFIGS.items():
        chunks = [c or default for c, default in zip(chunks, served)]
        with threadpool_limits(blas, user_api="blas") if blas else contextlib.nullcontext():
            row = frame_costs(factory, frames, *chunks, lean)
        row["tokenizer_chunk"], row["response_chunk"], row["feed_chunk"] = chunks
        row["blas_threads"], row["lm_forward"] = blas or "default", "lean" if lean else "hf"
        row["implied_realtime_sessions"] = math.floor(args.cores * frame_ms / row["cpu_ms_per_frame"])
        results[name] = row
        print(f"{name:7s} {row['cpu_ms_per_frame']:.2f} CPU ms/frame (p95 {row['cpu_ms_p95']:.1f}, "
              f"max {row['cpu_ms_max']:.1f}, {row['frames_over_frame_ms']} over {frame_ms:g} ms; "
              f"until the reply p95 {row['reply_ms_p95']:.1f} max {row['reply_ms_max']:.1f}, "
              f"longest slice {row['slice_ms_max']:.1f}) "
              f"{ {s: round(v['cpu_ms_per_frame'], 2) for s, v in row['by_state'].items()} } -> "
              f"{row['implied_realtime_sessions']} sessions on {args.cores} idle cores", flush=True)
    with threadpool_limits(1, user_api="blas"):
        paired = lean_vs_hf(factory, frames)
        steps = lm_step_costs(factory.pipeline.lm.model, (1, 4, 8))
    eot = {k: paired[k]["by_state"]["end_of_turn"] for k in ("hf", "lean")}
    print(f"lean vs HF forward, interleaved, outputs identical: CPU per frame "
          f"{paired['hf']['cpu_ms_per_frame']:.2f} -> {paired['lean']['cpu_ms_per_frame']:.2f} ms; "
          f"turn-ending frame until its reply {eot['hf']['reply_ms_per_frame']:.1f} -> "
          f"{eot['lean']['reply_ms_per_frame']:.1f} ms; ratios {paired['ratio_lean_over_hf']}")
    for name in ("hf", "lean"):
        print(f"  turn-ending frame until its reply by part, {name}: "
              f"{paired[name]['end_of_turn_reply_by_part']}")
    for row in steps:
        print(f"LM step x{row['sessions']}: {row['separate_calls_cpu_ms']} ms as separate HF "
              f"calls, {row['lean_separate_calls_cpu_ms']} ms lean ({row['lean_saving']}x), "
              f"{row['one_batched_call_cpu_ms']} ms batched ({row['saving']}x)")
    path = write_result(
        "serve_frame_cost", {"model": args.model, "vocoder": args.vocoder,
                             "seconds": args.seconds, "frame_ms": frame_ms, "cores": args.cores,
                             "torch_threads": 1, "load_avg": os.getloadavg()},
        results["served"]["cpu_ms_per_frame"], results["before"]["cpu_ms_per_frame"],
        "process CPU ms per 80 ms frame of one served session (served defaults); baseline = the "
        "server before (BLAS default threads, tokenizer chunk 5)",
        configs=results, lean_vs_hf=paired, lm_step=steps, worst_case=worst_case(results["served"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
