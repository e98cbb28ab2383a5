"""Servers in background threads, tiny in-test sessions and a websocket helper (loopback only)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace

import aiohttp
import numpy as np
import pytest

from speechlm.serve.connection import Limits
from speechlm.serve.parrot import ParrotFactory
from speechlm.serve.protocol import Kind, encode_pcm16, pack, unpack, unpack_json
from speechlm.serve.server import ServeConfig, serve
from speechlm.serve.session import Output


class RunningServer:
    """``serve()`` on 127.0.0.1 (any free port) in a thread with its own event loop."""

    def __init__(self, factory, config: ServeConfig) -> None:
        self.urls: list[str] = []
        self.stats = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(factory, config),),
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(120):
            raise RuntimeError("server did not start")

    async def _main(self, factory, config) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()

        def listening(info, urls):
            self.info, self.urls = info, urls
            self._ready.set()

        self.stats = await serve(factory, config, on_listening=listening, stop=self.stop_event)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"

    def http_stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/stats", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self._thread.join(30)


def config(**limits) -> ServeConfig:
    return ServeConfig(host="127.0.0.1", port=0, max_sessions=limits.pop("max_sessions", 8),
                       workers=limits.pop("workers", 2),
                       worker_mode=limits.pop("worker_mode", "process"),
                       limits=replace(Limits(), **limits))


@pytest.fixture
def start_server() -> Iterator:
    servers: list[RunningServer] = []

    def start(factory=None, **limits) -> RunningServer:
        server = RunningServer(factory or ParrotFactory(), config(**limits))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass(frozen=True)
class SlowFactory:
    """Sessions whose every push takes ``delay_s`` (a model slower than real time)."""

    delay_s: float = 0.3
    name: str = "slow"
    sample_rate: int = 16_000
    frame_samples: int = 1280

    def new_session(self):
        return SlowSession(self.delay_s)

    def warmup(self) -> None:
        pass


class SlowSession:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def push(self, frame: np.ndarray) -> Output:
        time.sleep(self.delay_s)
        return Output("listening", text="x")

    def end_turn(self) -> Output:
        return Output("listening")

    def reset(self) -> None:
        pass


@dataclass(frozen=True)
class FailingFactory(SlowFactory):
    """Sessions that raise on their third frame (a model bug)."""

    name: str = "failing"

    def new_session(self):
        return FailingSession()


class FailingSession(SlowSession):
    def __init__(self) -> None:
        self.frames = 0

    def push(self, frame: np.ndarray) -> Output:
        self.frames += 1
        if self.frames == 3:
            raise RuntimeError("model bug")
        return Output("listening")


class CrashingFactory(ParrotFactory):
    """Parrot sessions, except that a frame of all -1 samples kills the process running it (a
    crash in native code, the OOM killer)."""

    def new_session(self):
        return CrashingSession(self)


class CrashingSession(ParrotFactory().new_session().__class__):
    def push(self, frame: np.ndarray) -> Output:
        if np.all(frame == -1.0):
            os._exit(3)
        return super().push(frame)


def speech_like(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """Noise bursts loud enough to count as speech (the parrot's energy threshold)."""
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


class WS:
    """A bare protocol client for tests: send raw messages, read typed replies."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 handshake: dict) -> None:
        self.http, self.ws, self.handshake = http, ws, handshake

    @classmethod
    async def open(cls, url: str) -> "WS":
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(url, max_msg_size=0)
        msg = await ws.receive(timeout=10)
        kind, payload = unpack(msg.data)
        return cls(http, ws, unpack_json(payload) if kind == Kind.HANDSHAKE else
                   {"refused": payload.decode()})

    async def send_audio(self, samples: np.ndarray) -> None:
        await self.ws.send_bytes(pack(Kind.AUDIO, encode_pcm16(samples)))

    async def control(self, name: str) -> None:
        await self.ws.send_bytes(pack(Kind.CONTROL, {"control": name}))

    async def next(self, kind: Kind, timeout: float = 10.0) -> bytes:
        """Payload of the next message of ``kind`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise ConnectionError(f"connection ended: {msg.type.name} {self.ws.close_code}")
            got, payload = unpack(msg.data)
            if got == kind:
                return payload

    async def meta(self, timeout: float = 10.0) -> dict:
        return unpack_json(await self.next(Kind.METADATA, timeout))

    async def error(self, timeout: float = 10.0) -> str:
        return (await self.next(Kind.ERROR, timeout)).decode()

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()
