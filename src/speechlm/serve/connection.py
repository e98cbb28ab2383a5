"""One websocket connection: a reader that frames and queues audio, a worker that runs the session.

The reader never waits for the model: it cuts incoming PCM into frames and puts them in a bounded
queue, dropping the oldest audio (and counting it) when the model falls behind. The worker takes
one item at a time and awaits the session's call in a worker process or thread
(:mod:`speechlm.serve.workers`), so one slow session never blocks the event loop or the other
connections. Controls travel in the same queue as audio, so
they act in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from speechlm.serve.protocol import (CONTROLS, PROTOCOL, Kind, ProtocolError, decode_control,
                                     decode_pcm16, encode_pcm16, pack, parse)
from speechlm.serve.session import STATES, Output
from speechlm.serve.workers import ModelInfo, SessionHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Per-connection limits (see ``speechlm serve --help``)."""

    queue_frames: int = 8          # frames waiting for the model; older ones are dropped
    idle_timeout_s: float = 60.0   # close a connection that sends nothing for this long
    send_timeout_s: float = 10.0   # close a client that does not read for this long
    max_message_bytes: int = 1 << 20  # larger messages get an ERROR (the hard cap is 4x)


@dataclass
class Frame:
    index: int         # input frame number since the connection opened (dropped ones count)
    samples: np.ndarray
    received: float    # time.monotonic() when its last sample arrived


class SlowReader(Exception):
    """The client stopped reading: a send did not complete within the send timeout."""


class Connection:
    def __init__(self, ws: web.WebSocketResponse, model: ModelInfo, session: SessionHandle,
                 limits: Limits, sid: int) -> None:
        self.ws, self.model, self.session = ws, model, session
        self.limits, self.sid = limits, sid
        self.queue: deque[Frame | str] = deque()
        self.wakeup = asyncio.Event()
        self.pending = np.zeros(0, np.float32)  # samples of the next, incomplete frame
        self.frames_in = 0
        self.dropped = 0
        self.protocol_errors = 0
        self.paused = False
        self.state = "listening"

    def handshake(self) -> dict[str, Any]:
        f = self.model
        return {"protocol": PROTOCOL, "model": f.name, "sample_rate": f.sample_rate,
                "frame_samples": f.frame_samples,
                "frame_ms": 1000.0 * f.frame_samples / f.sample_rate, "session": self.sid,
                "queue_frames": self.limits.queue_frames,
                "max_message_bytes": self.limits.max_message_bytes,
                "idle_timeout_s": self.limits.idle_timeout_s, "controls": list(CONTROLS),
                "states": list(STATES)}

    async def run(self) -> str:
        """Serve until the client leaves or a limit closes the connection; returns why it ended."""
        try:
            await self.send(pack(Kind.HANDSHAKE, self.handshake()))
        except (ConnectionError, SlowReader):
            return "client_gone"  # left before the handshake
        worker = asyncio.create_task(self._work(), name=f"session-{self.sid}")
        reader = asyncio.create_task(self._read(), name=f"reader-{self.sid}")
        try:
            done, _ = await asyncio.wait({worker, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when the server cancels this handler
            for task in (worker, reader):
                task.cancel()
        results = await asyncio.gather(worker, reader, return_exceptions=True)
        first = next(iter(done))
        reason = results[0 if first is worker else 1]
        if isinstance(reason, SlowReader):
            return "slow_reader"
        if isinstance(reason, ConnectionError):
            return "client_gone"
        if isinstance(reason, BaseException):
            log.error("session %d failed", self.sid, exc_info=reason)
            await self.try_send(pack(Kind.ERROR, f"internal error: {type(reason).__name__}: "
                                                 f"{reason}"))
            return "error"
        return str(reason)

    # ---- reading -------------------------------------------------------------------------------

    async def _read(self) -> str:
        while True:
            try:
                msg = await self.ws.receive(timeout=self.limits.idle_timeout_s)
            except asyncio.TimeoutError:
                await self.try_send(pack(Kind.ERROR, f"idle for {self.limits.idle_timeout_s:g} s; "
                                                     "closing"))
                return "idle"
            if msg.type == WSMsgType.BINARY:
                try:
                    self._on_message(msg.data)
                except ProtocolError as err:
                    self.protocol_errors += 1
                    await self.send(pack(Kind.ERROR, str(err)))
            elif msg.type == WSMsgType.TEXT:
                self.protocol_errors += 1
                await self.send(pack(Kind.ERROR, "text websocket messages are not part of the "
                                                 "protocol: send binary messages (docs/serve.md)"))
            elif msg.type == WSMsgType.ERROR:
                log.info("session %d: websocket error %s", self.sid, self.ws.exception())
                return "protocol_violation"
            else:  # CLOSE, CLOSING, CLOSED
                return "client"

    def _on_message(self, data: bytes) -> None:
        message = parse(data, self.limits.max_message_bytes)
        if message.kind == Kind.AUDIO:
            self._on_audio(decode_pcm16(message.payload))
            return
        control = decode_control(message.payload)
        if control == "pause":
            self.paused = True
        elif control == "start":
            self.paused = False
        elif control == "reset":
            self.queue.clear()
            self.pending = np.zeros(0, np.float32)
            self._enqueue("reset")
        elif control == "end_turn":
            if self.pending.size:  # the last, incomplete frame: pad it with silence
                self._on_audio(np.zeros(self.model.frame_samples - self.pending.size, np.float32))
            self._enqueue("end_turn")
        if control in ("pause", "start"):
            self._enqueue(control)

    def _on_audio(self, samples: np.ndarray) -> None:
        if self.paused:
            return  # paused: the client's audio is not for the model
        n = self.model.frame_samples
        buffered = np.concatenate([self.pending, samples])
        whole = buffered.size // n * n
        now = time.monotonic()
        for start in range(0, whole, n):
            self._enqueue(Frame(self.frames_in, buffered[start:start + n], now))
            self.frames_in += 1
        self.pending = buffered[whole:]

    def _enqueue(self, item: Frame | str) -> None:
        if isinstance(item, Frame) and sum(isinstance(i, Frame) for i in self.queue) >= \
                self.limits.queue_frames:
            oldest = next(i for i in self.queue if isinstance(i, Frame))
            self.queue.remove(oldest)
            self.dropped += 1
        self.queue.append(item)
        self.wakeup.set()

    # ---- the model -------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                item = self.queue.popleft()
                if isinstance(item, Frame):
                    started = time.monotonic()
                    output, compute = await self.session.push(item.samples)
                    await self._send_output(output, frame=item.index, compute_ms=compute * 1e3,
                                            queue_ms=(started - item.received) * 1e3)
                elif item == "end_turn":
                    output, compute = await self.session.end_turn()
                    await self._send_output(output, frame=self.frames_in - 1, control=item,
                                            compute_ms=compute * 1e3)
                elif item == "reset":
                    await self.session.reset()
                    self.state = "listening"
                    await self._send_meta(control=item)
                else:  # pause / start: acknowledge in order with the audio before it
                    await self._send_meta(control=item)

    async def _send_output(self, output: Output, **figures: Any) -> None:
        if output.audio.size:
            await self.send(pack(Kind.AUDIO, encode_pcm16(output.audio)))
        if output.text:
            await self.send(pack(Kind.TEXT, output.text))
        self.state = output.state
        extra = {"tokens": [int(t) for t in output.tokens]} if output.tokens else {}
        if output.events:
            extra["events"] = list(output.events)
        await self._send_meta(**figures, audio_samples=int(output.audio.size), **extra)

    async def _send_meta(self, **fields: Any) -> None:
        await self.send(pack(Kind.METADATA, {
            "state": "paused" if self.paused else self.state, **fields, "dropped": self.dropped,
            "queued": sum(isinstance(i, Frame) for i in self.queue)}))

    # ---- sending ----------------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Send one message; a client that does not take it within the send timeout is slow."""
        try:
            await asyncio.wait_for(self.ws.send_bytes(data), self.limits.send_timeout_s)
        except asyncio.TimeoutError:
            raise SlowReader() from None

    async def try_send(self, data: bytes) -> None:
        """Send if the connection still takes messages (last words before closing)."""
        if self.ws.closed:
            return
        try:
            await self.send(data)
        except (SlowReader, ConnectionError, RuntimeError):
            pass
