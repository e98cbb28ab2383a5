"""`speechlm serve`: talk to a model in real time (websocket protocol + web page)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from speechlm.serve import DEFAULT_WORKERS  # the package root: no aiohttp, no torch

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
    model.add_argument("--listen-chunk-ms", type=int, default=400,
                       help="heard audio tokenized per call (larger: less CPU, units reach the LM "
                       "later; the reply does not wait)")
    model.add_argument("--response-chunk", type=int, default=2,
                       help="while speaking, each frame generates the units its audio needs, this "
                       "many at a time (small: no frame carries a burst of LM steps)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8998, help="port (0: any free port)")
    parser.add_argument("--max-sessions", type=int, default=32,
                        help="concurrent sessions; more connections are refused (code 1013)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="worker processes (each with a copy of the model) or threads running "
                        f"sessions (default: two per usable core, {DEFAULT_WORKERS} here)")
    parser.add_argument("--worker-mode", choices=("process", "thread"), default="process",
                        help="process (default): sessions in parallel, a crash ends only its "
                        "worker's sessions; thread: one copy of the weights, sessions share the "
                        "GIL (for models whose kernels release it, e.g. on a GPU)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads per worker (default 1)")
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
    """How to load the model (each worker process loads it; the server process never does)."""
    from speechlm.core.errors import ConfigError
    from speechlm.serve.loading import ModelSource

    if args.vocoder is None:  # the error comes at once, before any worker starts
        raise ConfigError(f"--model {args.model}: pass --vocoder DIR (the unit vocoder that turns "
                          "its replies into audio; `speechlm vocoder train` makes one)")
    return ModelSource(args.model, args.vocoder, args.tokenizer, args.max_new_tokens,
                       args.temperature, args.top_k, args.seed, args.frame_ms,
                       args.end_of_turn_ms, args.listen_chunk_ms, args.response_chunk)


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import functools

    from threadpoolctl import threadpool_limits

    from speechlm.core.errors import ConfigError
    from speechlm.core.threads import torch_threads
    from speechlm.serve.connection import Limits
    from speechlm.serve.loading import load_session_factory
    from speechlm.serve.parrot import ParrotFactory
    from speechlm.serve.server import ServeConfig, serve
    from speechlm.serve.workers import ModelInfo

    for name in ("max_sessions", "workers", "threads", "queue_frames", "max_message_bytes",
                 "response_chunk"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.idle_timeout <= 0 or args.send_timeout <= 0:
        raise ConfigError("--idle-timeout and --send-timeout must be > 0")
    factory = _model(args) if args.model else ParrotFactory() if args.parrot else \
        functools.partial(load_session_factory, args.session)
    config = ServeConfig(host=args.host, port=args.port, max_sessions=args.max_sessions,
                         workers=args.workers, worker_mode=args.worker_mode, threads=args.threads,
                         limits=Limits(queue_frames=args.queue_frames,
                                       idle_timeout_s=args.idle_timeout,
                                       send_timeout_s=args.send_timeout,
                                       max_message_bytes=args.max_message_bytes))

    def listening(model: ModelInfo, urls: list[str]) -> None:
        frame_ms = 1000 * model.frame_samples / model.sample_rate
        print(f"serving {model.name} ({model.sample_rate} Hz, {frame_ms:g} ms frames, "
              f"{config.workers} worker {config.worker_mode}es, up to {config.max_sessions} "
              "sessions)")
        for url in urls:
            print(f"listening on {url}  (page: {url}/  websocket: "
                  f"{url.replace('http', 'ws', 1)}/ws)", flush=True)

    try:
        # worker processes limit their own torch and BLAS threads; threads of this process need
        # the limits here (the parrot needs no torch). numpy's BLAS (k-means assignment) gets
        # --threads too: its default of one thread per core spins on busy cores, ~100x the CPU
        # of the multiply itself for a frame's few vectors
        in_process = args.worker_mode == "thread" and not args.parrot
        with torch_threads(args.threads) if in_process else \
                threadpool_limits(args.threads, user_api="blas"):  # torch_threads bounds BLAS too
            stats = asyncio.run(serve(factory, config, on_listening=listening))
    except OSError as err:  # port in use, address not available
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}") from None
    closed = ", ".join(f"{n} {why}" for why, n in sorted(stats.closed.items())) or "none"
    print(f"stopped: {stats.sessions_total} sessions ({closed}), {stats.frames_in} frames in, "
          f"{stats.frames_dropped} dropped")
    return 0
