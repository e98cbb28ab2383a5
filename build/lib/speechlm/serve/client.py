"""Replay audio to a ``speechlm serve`` endpoint at real-time pace and measure what comes back.

Used by ``speechlm client`` and ``benchmarks/serve_latency.py``. Frame ``i`` is sent at
``t0 + i * frame_ms`` (never faster, so the server sees a microphone), and the server answers
every frame it processed with a metadata message naming the frame, after that frame's audio and
text. From those the client measures, per frame, the round trip (frame sent -> its metadata
back) and, per reply, frame-to-first-audio (the frame or ``end_turn`` that triggered the reply
sent -> the reply's first audio back).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from speechlm.core.errors import SpeechLMError
from speechlm.data.audio import resample
from speechlm.serve.protocol import Kind, decode_pcm16, encode_pcm16, pack, unpack, unpack_json


class ServeClientError(SpeechLMError):
    """The server could not be reached or refused the session."""


@dataclass
class ReplayResult:
    handshake: dict[str, Any]
    frames_sent: int = 0
    rtt_ms: list[float] = field(default_factory=list)         # one per acknowledged frame
    first_audio_ms: list[float] = field(default_factory=list)  # one per reply
    dropped: int = 0              # frames the server dropped (its queue was full)
    acknowledged: int = 0         # frames the server processed
    states: list[str] = field(default_factory=list)  # state changes, in order
    audio: list[np.ndarray] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None

    @property
    def frame_ms(self) -> float:
        return float(self.handshake["frame_ms"])

    def summary(self) -> dict[str, Any]:
        return {"frames_sent": self.frames_sent, "acknowledged": self.acknowledged,
                "dropped": self.dropped, "rtt_ms": percentiles(self.rtt_ms),
                "first_audio_ms": percentiles(self.first_audio_ms), "replies": len(self.first_audio_ms),
                "audio_s": sum(a.size for a in self.audio) / self.handshake["sample_rate"],
                "states": self.states, "text": "".join(self.text), "errors": self.errors,
                "close_code": self.close_code}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"n": len(values), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(max(values))}


class _Receiver:
    """Matches the server's messages to the frames and controls the sender sent."""

    def __init__(self, result: ReplayResult) -> None:
        self.result = result
        self.sent_at: dict[int, float] = {}       # frame index -> send time
        self.control_at: dict[str, float] = {}    # control name -> last send time
        self.first_audio_at: float | None = None  # arrival of the first audio since the last meta
        self.replying = False                     # the previous frame produced audio

    def on_message(self, data: bytes, now: float) -> None:
        kind, payload = unpack(data)
        r = self.result
        if kind == Kind.AUDIO:
            r.audio.append(decode_pcm16(payload))
            if self.first_audio_at is None:
                self.first_audio_at = now
        elif kind == Kind.TEXT:
            r.text.append(payload.decode("utf-8", "replace"))
        elif kind == Kind.ERROR:
            r.errors.append(payload.decode("utf-8", "replace"))
        elif kind == Kind.METADATA:
            self._on_meta(unpack_json(payload), now)

    def _on_meta(self, meta: dict[str, Any], now: float) -> None:
        r = self.result
        if not r.states or r.states[-1] != meta["state"]:
            r.states.append(meta["state"])
        r.dropped = meta.get("dropped", r.dropped)
        frame = meta.get("frame")
        control = meta.get("control")
        if frame is not None and control is None and frame in self.sent_at:
            trigger = self.sent_at[frame]
            r.rtt_ms.append((now - trigger) * 1e3)
            r.acknowledged += 1
        else:
            trigger = self.control_at.get(control) if control else None
        has_audio = meta.get("audio_samples", 0) > 0
        if has_audio and not self.replying and trigger is not None and self.first_audio_at:
            r.first_audio_ms.append((self.first_audio_at - trigger) * 1e3)
        if control is None or has_audio:  # a control without audio does not end a reply
            self.replying = has_audio
        self.first_audio_at = None


async def replay(url: str, samples: np.ndarray, rate: int, end_turn: bool = True,
                 tail_s: float = 2.0, loop_s: float = 0.0, pace: float = 1.0,
                 connect_timeout_s: float = 10.0) -> ReplayResult:
    """Stream ``samples`` (mono float32 at ``rate``) to ``url``; see the module docstring.

    ``end_turn`` sends the end_turn control after the audio; ``tail_s`` seconds of silence follow
    (a turn-taking model answers while the user is quiet); ``loop_s`` > 0 repeats the audio until
    that many seconds were sent; ``pace`` 1.0 is real time (2.0: twice as fast).
    """
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            ws = await http.ws_connect(url, max_msg_size=0, heartbeat=30.0)
        except (aiohttp.ClientError, OSError) as err:
            raise ServeClientError(f"{url}: cannot connect ({err})") from None
        async with ws:
            first = await ws.receive(timeout=connect_timeout_s)
            if first.type != aiohttp.WSMsgType.BINARY or not first.data:
                raise ServeClientError(f"{url}: no handshake (got {first.type.name})")
            kind, payload = unpack(first.data)
            if kind != Kind.HANDSHAKE:
                raise ServeClientError(f"{url}: refused: {payload.decode('utf-8', 'replace')}")
            result = ReplayResult(handshake=unpack_json(payload))
            receiver = _Receiver(result)
            reading = asyncio.create_task(_read(ws, receiver))
            try:
                await _send(ws, receiver, _frames(samples, rate, result.handshake, loop_s, tail_s),
                            end_turn, pace, len(samples) / rate if loop_s <= 0 else loop_s)
                await _drain(receiver, result.handshake["frame_ms"] / 1000, timeout_s=10.0)
            finally:
                await ws.close()
                await asyncio.wait_for(reading, 10.0)
            result.close_code = ws.close_code
    return result


def _frames(samples: np.ndarray, rate: int, handshake: dict[str, Any], loop_s: float,
            tail_s: float) -> np.ndarray:
    """The audio at the server's rate, looped to ``loop_s``, plus the silent tail; (F, N)."""
    audio = resample(np.asarray(samples, np.float32), rate, handshake["sample_rate"])
    if loop_s > 0:
        reps = int(np.ceil(loop_s * handshake["sample_rate"] / max(audio.size, 1)))
        audio = np.tile(audio, reps)[: int(loop_s * handshake["sample_rate"])]
    n = handshake["frame_samples"]
    tail = np.zeros(int(tail_s * handshake["sample_rate"]), np.float32)
    audio = np.concatenate([audio, tail])
    audio = np.pad(audio, (0, -audio.size % n))
    return audio.reshape(-1, n)  # (F, N)


async def _send(ws: aiohttp.ClientWebSocketResponse, receiver: _Receiver, frames: np.ndarray,
                end_turn: bool, pace: float, speech_s: float) -> None:
    frame_s = receiver.result.frame_ms / 1000 / pace
    speech_frames = int(np.ceil(speech_s * 1000 / receiver.result.frame_ms))
    start = time.monotonic()
    for i, frame in enumerate(frames):
        delay = start + i * frame_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if ws.closed:
            return
        receiver.sent_at[i] = time.monotonic()
        await ws.send_bytes(pack(Kind.AUDIO, encode_pcm16(frame)))
        receiver.result.frames_sent += 1
        if end_turn and i == speech_frames - 1:
            receiver.control_at["end_turn"] = time.monotonic()
            await ws.send_bytes(pack(Kind.CONTROL, {"control": "end_turn"}))


async def _read(ws: aiohttp.ClientWebSocketResponse, receiver: _Receiver) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            receiver.on_message(msg.data, time.monotonic())


async def _drain(receiver: _Receiver, frame_s: float, timeout_s: float) -> None:
    """Wait until every frame sent was answered or dropped (or the timeout)."""
    r = receiver.result
    deadline = time.monotonic() + timeout_s
    while r.acknowledged + r.dropped < r.frames_sent and time.monotonic() < deadline:
        await asyncio.sleep(frame_s / 4)


def summarize(results: list[ReplayResult]) -> dict[str, Any]:
    """Pooled figures over sessions, plus each session's own summary."""
    return {"sessions": len(results), "frame_ms": results[0].frame_ms if results else None,
            "frames_sent": sum(r.frames_sent for r in results),
            "acknowledged": sum(r.acknowledged for r in results),
            "dropped": sum(r.dropped for r in results),
            "rtt_ms": percentiles([x for r in results for x in r.rtt_ms]),
            "first_audio_ms": percentiles([x for r in results for x in r.first_audio_ms]),
            "errors": [e for r in results for e in r.errors],
            "per_session": [r.summary() for r in results]}
