"""``speechlm serve``: an aiohttp server for the page (``/``), the protocol (``/ws``) and ``/stats``.

aiohttp serves the static page, the websocket endpoint and a JSON status route from one asyncio
server, and its client drives ``speechlm client`` and the benchmark, so one well-kept library
covers both ends. Sessions run in worker processes (or threads: :mod:`speechlm.serve.workers`);
the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from speechlm.serve import DEFAULT_WORKERS
from speechlm.serve.connection import Connection, Limits
from speechlm.serve.protocol import Kind, pack
from speechlm.serve.workers import FactorySource, ModelInfo, Sessions, make_sessions

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("speechlm.serve") / "static"))
HARD_CAP_FACTOR = 4  # aiohttp closes the connection (1009) above this many times the limit


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8998
    max_sessions: int = 32
    workers: int = DEFAULT_WORKERS  # two per usable core (speechlm.serve)
    worker_mode: str = "process"  # or "thread" (see speechlm.serve.workers)
    threads: int = 1              # torch and BLAS threads per worker process
    limits: Limits = field(default_factory=Limits)


@dataclass
class Stats:
    sessions_active: int = 0
    sessions_total: int = 0
    rejected_full: int = 0
    frames_in: int = 0
    frames_dropped: int = 0
    protocol_errors: int = 0
    closed: Counter = field(default_factory=Counter)  # why sessions ended

    def to_dict(self) -> dict[str, Any]:
        return {"sessions_active": self.sessions_active, "sessions_total": self.sessions_total,
                "rejected_full": self.rejected_full, "frames_in": self.frames_in,
                "frames_dropped": self.frames_dropped, "protocol_errors": self.protocol_errors,
                "closed": dict(self.closed)}


class Server:
    """The application: one :class:`Connection` (and session) per websocket."""

    def __init__(self, sessions: Sessions, config: ServeConfig) -> None:
        self.sessions, self.config = sessions, config
        self.stats = Stats()
        self.connections: set[Connection] = set()
        self.shutting_down = False
        self.app = web.Application()
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/ws", self._websocket)
        self.app.router.add_get("/stats", self._stats)
        self.app.router.add_static("/static/", STATIC)
        self.app.on_shutdown.append(self._close_all)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _stats(self, request: web.Request) -> web.Response:
        workers = self.sessions.stats()  # rss_bytes: the server and its worker processes
        return web.json_response({**self.stats.to_dict(), "rss_bytes": workers.pop("rss_bytes"),
                                  "workers": workers})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        limits = self.config.limits
        ws = web.WebSocketResponse(max_msg_size=HARD_CAP_FACTOR * limits.max_message_bytes,
                                   heartbeat=30.0)
        await ws.prepare(request)
        if self.stats.sessions_active >= self.config.max_sessions:
            self.stats.rejected_full += 1
            with contextlib.suppress(ConnectionError):
                await ws.send_bytes(pack(Kind.ERROR, f"server full: {self.config.max_sessions} "
                                                     "sessions (--max-sessions); try again later"))
            await _close(ws, request, code=1013)
            return ws
        self.stats.sessions_active += 1
        self.stats.sessions_total += 1
        sid = self.stats.sessions_total
        reason = "error"
        connection = session = None
        try:
            try:
                session = await self.sessions.open()
            except Exception as err:  # noqa: BLE001 - any model failure ends this session only
                log.exception("session %d: new_session failed", sid)
                with contextlib.suppress(ConnectionError):
                    await ws.send_bytes(pack(Kind.ERROR, f"cannot open a session: "
                                                         f"{type(err).__name__}: {err}"))
                return ws
            connection = Connection(ws, self.sessions.info, session, limits, sid)
            self.connections.add(connection)
            reason = await connection.run()
        finally:
            if self.shutting_down and reason in ("client", "client_gone"):
                reason = "shutdown"
            self.stats.sessions_active -= 1
            self.stats.closed[reason] += 1
            if session is not None:
                session.close()
            if connection is not None:
                self.connections.discard(connection)
                self.stats.frames_in += connection.frames_in
                self.stats.frames_dropped += connection.dropped
                self.stats.protocol_errors += connection.protocol_errors
            if not self.shutting_down:  # on shutdown, _close_all closes it (code 1001)
                await _close(ws, request, code=1000 if reason == "client" else 1011)
            log.info("session %d closed (%s)", sid, reason)
        return ws

    async def _close_all(self, app: web.Application) -> None:
        """On shutdown: tell every client, close every websocket (code 1001 going away)."""
        self.shutting_down = True
        await asyncio.gather(*(c.try_send(pack(Kind.ERROR, "server shutting down"))
                               for c in list(self.connections)))
        await asyncio.gather(*(c.ws.close(code=1001, message=b"server shutting down")
                               for c in list(self.connections)), return_exceptions=True)


async def _close(ws: web.WebSocketResponse, request: web.Request, code: int) -> None:
    """Close politely; a client that does not take the close frame is cut off."""
    if ws.closed:
        return
    try:
        await asyncio.wait_for(ws.close(code=code), 5.0)
    except (asyncio.TimeoutError, ConnectionError):
        if request.transport is not None:
            request.transport.abort()


async def serve(factory: FactorySource, config: ServeConfig,
                on_listening: Callable[[ModelInfo, list[str]], None] | None = None,
                stop: asyncio.Event | None = None) -> Stats:
    """Start the workers (each loads and warms up the model), listen, and serve until
    SIGINT/SIGTERM (or ``stop``) arrives. ``factory`` is a :class:`SessionFactory` or a
    zero-argument callable that builds one (in each worker process; it must pickle)."""
    loop = asyncio.get_running_loop()
    sessions = make_sessions(factory, config.worker_mode, config.workers, config.threads)
    await sessions.start()
    server = Server(sessions, config)
    runner = web.AppRunner(server.app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
    stop = stop or asyncio.Event()
    handled = []
    try:
        await runner.setup()
        await web.TCPSite(runner, config.host, config.port).start()
        if on_listening is not None:
            on_listening(sessions.info, [_url(address) for address in runner.addresses])
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
            except (RuntimeError, ValueError):  # not the main thread (tests run servers in threads)
                pass
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        await sessions.close()
    return server.stats


def _url(address: Any) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
