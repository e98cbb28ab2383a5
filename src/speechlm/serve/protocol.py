"""The binary websocket protocol of ``speechlm serve`` (docs/serve.md), modelled on Moshi's.

Every message is one binary websocket message whose first byte is its kind and whose rest is the
payload. Parsing never raises anything but :class:`ProtocolError`, whose text is what the server
sends back as an ``ERROR`` message; the connection stays usable after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

PROTOCOL = "speechlm-serve/1"
CONTROLS = ("start", "end_turn", "pause", "reset")


class Kind(IntEnum):
    HANDSHAKE = 0x00  # server -> client, JSON
    AUDIO = 0x01      # both ways, PCM16 little-endian mono at the handshake's rate
    TEXT = 0x02       # server -> client, UTF-8 transcripts / text tokens
    CONTROL = 0x03    # client -> server, JSON {"control": one of CONTROLS}
    METADATA = 0x04   # server -> client, JSON state / latency figures
    ERROR = 0x05      # server -> client, UTF-8


CLIENT_KINDS = frozenset({Kind.AUDIO, Kind.CONTROL})


class ProtocolError(ValueError):
    """A client message the server cannot use; the text is sent back as an ERROR message."""


@dataclass(frozen=True)
class Message:
    kind: Kind
    payload: bytes


def parse(data: bytes, max_bytes: int) -> Message:
    """Split a client message into kind and payload; reject what a client may not send."""
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if not data:
        raise ProtocolError("empty message (the first byte must be the message kind)")
    try:
        kind = Kind(data[0])
    except ValueError:
        raise ProtocolError(f"unknown message kind 0x{data[0]:02x}") from None
    if kind not in CLIENT_KINDS:
        raise ProtocolError(f"message kind 0x{kind:02x} ({kind.name.lower()}) is sent by the "
                            "server only; clients send audio (0x01) and control (0x03)")
    return Message(kind, bytes(data[1:]))


def decode_pcm16(payload: bytes) -> np.ndarray:
    """PCM16 little-endian bytes -> float32 samples in [-1, 1)."""
    if not payload:
        raise ProtocolError("audio message without samples")
    if len(payload) % 2:
        raise ProtocolError(f"audio payload of {len(payload)} bytes is odd; PCM16 needs 2 bytes "
                            "per sample")
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


def encode_pcm16(samples: np.ndarray) -> bytes:
    """float32 samples -> PCM16 little-endian bytes (clipped); exact inverse of decode_pcm16."""
    scaled = np.nan_to_num(np.asarray(samples, dtype=np.float32)) * 32768.0
    return np.clip(scaled.round(), -32768, 32767).astype("<i2").tobytes()


def decode_control(payload: bytes) -> str:
    """``{"control": NAME}`` -> NAME, one of :data:`CONTROLS`."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"control message is not UTF-8 JSON ({err})") from None
    name = body.get("control") if isinstance(body, dict) else None
    if name not in CONTROLS:
        raise ProtocolError(f"control message needs {{\"control\": one of {list(CONTROLS)}}}, "
                            f"got {json.dumps(body)[:200]}")
    return name


def pack(kind: Kind, payload: bytes | str | dict[str, Any]) -> bytes:
    """One message: the kind byte, then bytes as they are, text as UTF-8, a dict as JSON."""
    if isinstance(payload, dict):
        payload = json.dumps(payload, separators=(",", ":"))
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return bytes([kind]) + payload


def unpack(data: bytes) -> tuple[Kind, bytes]:
    """Server message -> (kind, payload); used by the client."""
    if not data:
        raise ProtocolError("empty message from the server")
    return Kind(data[0]), bytes(data[1:])


def unpack_json(payload: bytes) -> dict[str, Any]:
    return json.loads(payload.decode("utf-8"))
