"""`speechlm serve`: talk to a model in real time (websocket protocol + web page)."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve a model over websockets with a web page (real-time talk)",
        description="Serve a model to browsers and `speechlm client`: the page at http://HOST:PORT/, "
        "the binary protocol at ws://HOST:PORT/ws (docs/serve.md), counters at /stats. Listens on "
        "127.0.0.1 only unless --host says otherwise. Stop with Ctrl-C (SIGINT) or SIGTERM.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", default=None, help="a trained speech LM directory (its tokenizer "
                      "is the one it records; needs --vocoder)")
    what.add_argument("--parrot", action="store_true",
                      help="no model: repeat what was heard after each pause (sound check)")
    what.add_argument("--session", metavar="MODULE:ATTR", default=None,
                      help="serve your own SessionFactory (an object or a zero-argument callable)")
    model = parser.add_argument_group("with --model")
    model.add_argument("--vocoder", default=None, help="unit vocoder directory (units -> audio)")
    model.add_argument("--tokenizer", default=None, help="speech tokenizer directory (default: "
                       "the one the model records)")
    model.add_argument("--max-new-tokens", type=int, default=150, help="units per reply at most")
    model.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    model.add_argument("--top-k", type=int, default=50)
    model.add_argument("--seed", type=int, default=0)
    model.add_argument("--frame-ms", type=int, default=80,
                       help="audio per protocol frame (per model call), ms")
    model.add_argument("--end-of-turn-ms", type=int, default=640,
                       help="answer after this much quiet following speech (0: only on end_turn)")
    model.add_argument("--listen-chunk-ms", type=int, default=240,
                       help="heard audio tokenized per call (larger: less CPU, units reach the LM "
                       "later; the reply does not wait)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8998, help="port (0: any free port)")
    parser.add_argument("--max-sessions", type=int, default=32,
                        help="concurrent sessions; more connections are refused (code 1013)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads running sessions (default: one per usable core)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads per worker (default 1: workers x threads = "
                        "cores)")
    parser.add_argument("--queue-frames", type=int, default=8,
                        help="frames a session may fall behind before its oldest audio is dropped")
    parser.add_argument("--idle-timeout", type=float, default=60.0,
                        help="close a connection that sends nothing for this many seconds")
    parser.add_argument("--send-timeout", type=float, default=10.0,
                        help="close a client that has not read for this many seconds")
    parser.add_argument("--max-message-bytes", type=int, default=1 << 20,
                        help="larger client messages get an error message")
    parser.set_defaults(handler=_serve)


def _model(args: argparse.Namespace):
    from speechlm.core.errors import ConfigError

    if args.vocoder is None:  # before importing torch: the error comes at once
        raise ConfigError(f"--model {args.model}: pass --vocoder DIR (the unit vocoder that turns "
                          "its replies into audio; `speechlm vocoder train` makes one)")
    from speechlm.generation.pipeline import Sampling
    from speechlm.serve.models import load_model_factory

    return load_model_factory(args.model, args.vocoder, args.tokenizer,
                              Sampling(args.max_new_tokens, args.temperature, args.top_k),
                              args.seed, args.frame_ms, args.end_of_turn_ms, args.listen_chunk_ms)


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from threadpoolctl import threadpool_limits

    from speechlm.core.errors import ConfigError
    from speechlm.core.threads import torch_threads
    from speechlm.serve.connection import Limits
    from speechlm.serve.loading import load_session_factory
    from speechlm.serve.parrot import ParrotFactory
    from speechlm.serve.server import ServeConfig, serve

    for name in ("max_sessions", "workers", "threads", "queue_frames", "max_message_bytes"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.idle_timeout <= 0 or args.send_timeout <= 0:
        raise ConfigError("--idle-timeout and --send-timeout must be > 0")
    factory = _model(args) if args.model else ParrotFactory() if args.parrot else \
        load_session_factory(args.session)
    config = ServeConfig(host=args.host, port=args.port, max_sessions=args.max_sessions,
                         workers=args.workers,
                         limits=Limits(queue_frames=args.queue_frames,
                                       idle_timeout_s=args.idle_timeout,
                                       send_timeout_s=args.send_timeout,
                                       max_message_bytes=args.max_message_bytes))

    def listening(urls: list[str]) -> None:
        frame_ms = 1000 * factory.frame_samples / factory.sample_rate
        print(f"serving {factory.name} ({factory.sample_rate} Hz, {frame_ms:g} ms frames, "
              f"{config.workers} workers, up to {config.max_sessions} sessions)")
        for url in urls:
            print(f"listening on {url}  (page: {url}/  websocket: "
                  f"{url.replace('http', 'ws', 1)}/ws)", flush=True)

    try:
        # the parrot needs no torch (and starts in a second without importing it). numpy's BLAS
        # (k-means assignment) gets --threads too: its default of one thread per core spins
        # on busy cores, ~100x the CPU of the multiply itself for a frame's few vectors
        with contextlib.nullcontext() if args.parrot else torch_threads(args.threads), \
                threadpool_limits(args.threads, user_api="blas"):
            stats = asyncio.run(serve(factory, config, on_listening=listening))
    except OSError as err:  # port in use, address not available
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    closed = ", ".join(f"{n} {why}" for why, n in sorted(stats.closed.items())) or "none"
    print(f"stopped: {stats.sessions_total} sessions ({closed}), {stats.frames_in} frames in, "
          f"{stats.frames_dropped} dropped")
    return 0
