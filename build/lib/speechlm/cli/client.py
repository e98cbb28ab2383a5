"""`speechlm client`: talk to `speechlm serve` with WAV files at real-time pace and measure it."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "client", help="replay WAVs to a `speechlm serve` endpoint and measure latency",
        description="Stream WAV files to ws://HOST:PORT/ws at real-time pace over one or more "
        "concurrent connections (connection i plays WAV i mod len(WAVS)), save what the model "
        "said, and report per-frame round trip and frame-to-first-audio latency (p50/p95/p99).")
    parser.add_argument("wavs", nargs="+", help="audio files (any rate; resampled to the server's)")
    parser.add_argument("--url", default="ws://127.0.0.1:8998/ws", help="websocket endpoint")
    parser.add_argument("--connections", type=int, default=1, help="concurrent sessions")
    parser.add_argument("--tail", type=float, default=2.0,
                        help="seconds of silence sent after the audio (time to answer)")
    parser.add_argument("--no-end-turn", action="store_true",
                        help="do not send end_turn after the audio (let the model decide)")
    parser.add_argument("--loop-seconds", type=float, default=0.0,
                        help="repeat the audio until this many seconds were sent")
    parser.add_argument("--out", default=None, help="write each session's reply as OUT/reply-N.wav")
    parser.add_argument("--json", default=None, help="write the measurements as JSON here")
    parser.set_defaults(handler=_client)


def _client(args: argparse.Namespace) -> int:
    import asyncio
    import json
    from pathlib import Path

    import numpy as np

    from speechlm.core.errors import ConfigError
    from speechlm.data.audio import read_audio, write_wav
    from speechlm.serve.client import replay, summarize

    if args.connections < 1:
        raise ConfigError(f"--connections must be >= 1, got {args.connections}")
    clips = [read_audio(Path(w)) for w in args.wavs]  # 16 kHz mono float32, checked

    async def run_all():
        return await asyncio.gather(*(
            replay(args.url, clips[i % len(clips)], 16_000, end_turn=not args.no_end_turn,
                   tail_s=args.tail, loop_s=args.loop_seconds) for i in range(args.connections)))

    results = asyncio.run(run_all())
    report = summarize(results)
    for i, r in enumerate(results):
        s = r.summary()
        print(f"session {i}: {s['acknowledged']}/{s['frames_sent']} frames answered, "
              f"{s['dropped']} dropped, {s['replies']} replies ({s['audio_s']:.2f} s of audio), "
              f"states {' > '.join(s['states'][:12])}" + (f", errors: {s['errors']}" if s['errors'] else ""))
        if s["text"]:
            print(f"  text: {s['text']}")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            audio = np.concatenate(r.audio) if r.audio else np.zeros(0, np.float32)
            write_wav(Path(args.out) / f"reply-{i}.wav", audio, r.handshake["sample_rate"])
    rtt, first = report["rtt_ms"], report["first_audio_ms"]
    print(f"round trip per frame ({report['frame_ms']:g} ms frames): p50 {_ms(rtt['p50'])} "
          f"p95 {_ms(rtt['p95'])} p99 {_ms(rtt['p99'])}; frame-to-first-audio: p50 "
          f"{_ms(first['p50'])} p95 {_ms(first['p95'])} over {first['n']} replies; "
          f"dropped {report['dropped']} of {report['frames_sent']} frames")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
