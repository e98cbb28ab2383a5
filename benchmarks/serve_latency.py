"""Real-time serving under load: N concurrent sessions replay speech at real-time pace.

    python benchmarks/serve_latency.py [--serve="--model DIR"] [--sessions 8] [--seconds 20]
    python benchmarks/serve_latency.py --serve="--model DIR" --soak --sessions 32 --seconds 120

Each configuration runs a fresh `speechlm serve` process (so its RSS and CPU time, summed over it
and its worker processes, are the server's alone) and drives it from this process with `speechlm.serve.client.replay`. The baseline is the same load
against `speechlm serve --parrot` (no model: server, protocol and loopback network only), run in
the same invocation. Real time means every frame answered, none dropped, and per-frame round
trip p95 below the frame duration. Without --soak: the check at --sessions, then a sweep of N
for the largest real-time N (results/serve_latency.json). With --soak: --waves rounds of
--sessions sessions, one after another on one server, RSS sampled every second, every session's
close checked; RSS growth within the first round and from round to round
(results/serve_soak.json). The client
shares the CPU with the server, so figures include its own scheduling delay; the load average
is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from speechlm.data.audio import read_audio  # noqa: E402
from speechlm.serve.client import replay, summarize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SWEEP = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
SENTENCES = ["The little boat drifted slowly along the quiet river.",
             "Could you tell me what time the train leaves tomorrow?",
             "She opened the window and listened to the rain.",
             "We walked home together after the long meeting."]


def speech_clips(n: int = 4) -> list[np.ndarray]:
    """Espeak sentences, each followed by 0.8 s of quiet (a pause a model can answer in)."""
    from speechlm.data.tts import Espeak, Voice

    tts = Espeak()
    voices = [Voice("en-us", 160, 50, 50), Voice("en+f3", 170, 60, 60),
              Voice("en-gb-x-rp", 150, 45, 40), Voice("en-us+m3", 165, 55, 50)]
    clips = []
    for i in range(n):
        speech = tts.synthesize(SENTENCES[i % len(SENTENCES)], voices[i % len(voices)]).samples
        clips.append(np.concatenate([speech, np.zeros(12_800, np.float32)]).astype(np.float32))
    return clips


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


class Server:
    """`speechlm serve ARGS --port 0` in a subprocess; its URL, RSS samples and /stats."""

    def __init__(self, args: list[str], max_sessions: int, log_dir: Path) -> None:
        self.log = log_dir / f"serve-{time.monotonic_ns()}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "speechlm", "serve", *args, "--port", "0", "--max-sessions",
             str(max_sessions), "--idle-timeout", "600"], env=env,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while not (match := re.search(r"listening on http://([\d.]+):(\d+)", self.log.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        self.http = f"http://{match[1]}:{match[2]}"
        self.ws = f"ws://{match[1]}:{match[2]}/ws"
        self.ps = psutil.Process(self.proc.pid)
        self.rss: list[tuple[float, int]] = []

    def processes(self) -> list[psutil.Process]:
        """The server and its worker processes (each loads its own copy of the model)."""
        return [self.ps, *self.ps.children(recursive=True)]

    def total(self, measure) -> float:
        """Sum of ``measure(process)`` over the server's processes (ones that just exited: 0)."""
        total = 0.0
        for process in self.processes():
            try:
                total += measure(process)
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_bytes(self) -> int:
        return int(self.total(lambda p: p.memory_info().rss))

    def cpu_s(self) -> float:
        return self.total(lambda p: sum(p.cpu_times()[:2]))

    async def sample_rss(self, every_s: float = 1.0) -> None:
        start = time.monotonic()
        while True:
            self.rss.append((time.monotonic() - start, self.rss_bytes()))
            await asyncio.sleep(every_s)

    async def stats(self) -> dict:
        async with aiohttp.ClientSession() as http, http.get(self.http + "/stats") as response:
            return await response.json()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


async def load(server: Server, clips: list[np.ndarray], sessions: int, seconds: float) -> dict:
    """``sessions`` concurrent real-time replays of ``seconds`` each, started 50 ms apart."""
    before = await server.stats()  # counters are cumulative over the server's life
    cpu_before = server.cpu_s()
    wall_before = time.monotonic()
    sampler = asyncio.create_task(server.sample_rss())

    async def one(i: int):
        await asyncio.sleep(0.05 * i)  # staggered like real users, not one burst
        return await replay(server.ws, clips[i % len(clips)], 16_000, end_turn=False,
                            tail_s=1.0, loop_s=seconds)

    results = await asyncio.gather(*(one(i) for i in range(sessions)), return_exceptions=True)
    await asyncio.sleep(0.5)
    stats = await server.stats()
    sampler.cancel()
    cpu_s = server.cpu_s() - cpu_before
    wall_s = time.monotonic() - wall_before
    frames_in = stats["frames_in"] - before["frames_in"]
    dropped = stats["frames_dropped"] - before["frames_dropped"]
    failed = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException)]
    report = summarize(ok)
    report.pop("per_session")
    frame_ms = report["frame_ms"] or float("nan")
    realtime = (not failed and report["dropped"] == 0 and report["acknowledged"] ==
                report["frames_sent"] and report["rtt_ms"]["p95"] is not None and
                report["rtt_ms"]["p95"] < frame_ms)
    rss = [r for _, r in server.rss]
    return {"sessions": sessions, "seconds": seconds, "realtime": realtime, "failed": failed,
            **report, "first_audio_incl_frame_p95_ms":
                None if report["first_audio_ms"]["p95"] is None else
                report["first_audio_ms"]["p95"] + frame_ms,
            "rss_start_mb": rss[0] / 2**20, "rss_peak_mb": max(rss) / 2**20,
            "rss_end_mb": rss[-1] / 2**20, "server_stats": stats,
            # load-independent cost: server CPU time per frame processed, and its CPU share
            # (the server and its worker processes together; RSS too)
            "server_cpu_ms_per_frame": 1e3 * cpu_s / max(frames_in, 1),
            "server_cpu_ms_per_processed_frame": 1e3 * cpu_s / max(frames_in - dropped, 1),
            "server_cpu_share": cpu_s / wall_s,
            "load_avg_1m": os.getloadavg()[0]}


def describe(serve_args: list[str], result: dict) -> None:
    rtt, first = result["rtt_ms"], result["first_audio_ms"]
    print(f"  {' '.join(serve_args)} N={result['sessions']}: rtt p50 {rtt['p50']:.1f} p95 "
          f"{rtt['p95']:.1f} p99 {rtt['p99']:.1f} ms, first audio p95 "
          f"{first['p95'] or float('nan'):.1f} ms, dropped {result['dropped']}, real time "
          f"{result['realtime']}, server CPU {result['server_cpu_ms_per_frame']:.2f} ms/frame, "
          f"RSS {result['rss_start_mb']:.0f}->{result['rss_end_mb']:.0f} MB, "
          f"load {result['load_avg_1m']:.1f}", flush=True)


def measure(serve_args: list[str], clips, sessions: int, seconds: float, log_dir: Path,
            waves: int = 1) -> list[dict]:
    """``waves`` rounds of ``sessions`` concurrent sessions, one after another, on one server."""
    server = Server(serve_args, max(sessions, 1), log_dir)
    results = []
    try:
        for _ in range(waves):
            server.rss = []
            result = asyncio.run(load(server, clips, sessions, seconds))
            result["server_rss_timeline"] = [(round(t, 1), round(r / 2**20, 1))
                                             for t, r in server.rss]
            describe(serve_args, result)
            results.append(result)
    finally:
        code = server.stop()
    for result in results:
        result["server_exit_code"] = code
    return results


def brief(r: dict) -> dict:
    """A sweep row without the per-second timelines."""
    return {k: v for k, v in r.items() if k not in ("server_rss_timeline",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", default="--parrot", help="arguments of `speechlm serve`")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session")
    parser.add_argument("--sweep", default=",".join(map(str, SWEEP)),
                        help="N to try for the largest real-time N ('' to skip)")
    parser.add_argument("--soak", action="store_true", help="long runs on one server (RSS growth)")
    parser.add_argument("--waves", type=int, default=2,
                        help="--soak: rounds of --sessions sessions, one after another")
    parser.add_argument("--wav", nargs="*", default=None,
                        help="audio to replay (default: four espeak sentences with pauses)")
    parser.add_argument("--name", default=None, help="result name (default serve_latency/serve_soak)")
    args = parser.parse_args()
    serve_args = shlex.split(args.serve)
    clips = [read_audio(Path(w)) for w in args.wav] if args.wav else speech_clips()
    config = {"serve": args.serve, "sessions": args.sessions, "seconds": args.seconds,
              "clips_s": [round(c.size / 16000, 2) for c in clips], "cpus": os.cpu_count(),
              "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": cpu_model(),
              "load_avg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        if args.soak:
            print(f"soak: {args.waves} waves of {args.sessions} sessions x {args.seconds:g} s",
                  flush=True)
            waves = measure(serve_args, clips, args.sessions, args.seconds, log_dir, args.waves)
            first, last = waves[0], waves[-1]
            # within the first wave: from the sample at 10% of it to its end (live sessions'
            # state included); across waves: what the first wave left behind vs the last
            warm = next(r for t, r in first["server_rss_timeline"] if t >= 0.1 * args.seconds)
            growth = last["rss_end_mb"] - first["rss_end_mb"]
            closed = last["server_stats"]["closed"]
            path = write_result(
                args.name or "serve_soak", config, growth, first["rss_end_mb"],
                "MB RSS growth from the end of the first wave to the end of the last; "
                "baseline = RSS (MB) at the end of the first wave",
                first_wave_growth_mb=first["rss_end_mb"] - warm,
                rss_end_of_wave_mb=[w["rss_end_mb"] for w in waves],
                crashed=last["server_exit_code"] != 0 or any(w["failed"] for w in waves),
                all_closed_cleanly=closed == {"client": args.sessions * args.waves} and
                last["server_stats"]["sessions_active"] == 0, waves=waves)
            print(f"RSS at the end of each wave {[round(w['rss_end_mb']) for w in waves]} MB "
                  f"(first wave {first['rss_end_mb'] - warm:+.1f} MB after warm-up, then "
                  f"{growth:+.1f} MB), closed {closed}; wrote {path}")
            return
        print(f"real-time check at N={args.sessions} (model, then parrot baseline)", flush=True)
        model, = measure(serve_args, clips, args.sessions, args.seconds, log_dir)
        parrot = model if serve_args == ["--parrot"] else \
            measure(["--parrot"], clips, args.sessions, args.seconds, log_dir)[0]
        sizes = [int(x) for x in args.sweep.split(",") if x]
        sweep, largest = [], (0 if sizes else None)
        for n in sizes:
            row = model if n == args.sessions else \
                measure(serve_args, clips, n, args.seconds, log_dir)[0]
            sweep.append(brief(row))
            if not row["realtime"]:
                break
            largest = n
        value = model["rtt_ms"]["p95"]
        base = None if parrot is model else parrot["rtt_ms"]["p95"]  # no baseline for itself
        path = write_result(
            args.name or "serve_latency", {**config, "load_avg_after": os.getloadavg()}, value,
            base, "ms per-frame round trip p95 at --sessions; baseline = the parrot (no model)",
            frame_ms=model["frame_ms"], realtime_at_sessions=model["realtime"],
            first_audio_p95_ms=model["first_audio_ms"]["p95"],
            first_audio_incl_frame_p95_ms=model["first_audio_incl_frame_p95_ms"],
            largest_realtime_sessions=largest, model=brief(model), parrot=brief(parrot),
            sweep=sweep)
        print(f"N={args.sessions}: rtt p95 {value:.1f} ms vs parrot {base or value:.1f} ms "
              f"(frame {model['frame_ms']:g} ms), real time {model['realtime']}; "
              f"largest real-time N {largest}; wrote {path}")


if __name__ == "__main__":
    main()
