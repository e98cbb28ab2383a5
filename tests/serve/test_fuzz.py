"""Protocol fuzzing: random bytes, every kind byte, truncated and oversized messages, broken
websocket frames, raw TCP garbage, abrupt disconnects and a client that stops reading, all at
once, while one well-behaved session streams. The server and that session must come through."""

import asyncio
import base64
import os
import socket
import struct
from dataclasses import dataclass

import numpy as np

from speechlm.serve.client import replay
from speechlm.serve.parrot import ParrotFactory
from speechlm.serve.protocol import Kind, encode_pcm16, pack
from speechlm.serve.session import Output

from .conftest import WS, speech_like

LIMIT = 8000  # max_message_bytes of the fuzzed server


@dataclass(frozen=True)
class ChattyFactory(ParrotFactory):
    """Parrot sessions, except that a frame of all -1 samples gets 64 KB of audio back (to fill
    the socket buffers of a client that stops reading)."""

    def new_session(self):
        return ChattySession(self)


class ChattySession(ParrotFactory().new_session().__class__):
    def push(self, frame):
        if np.all(frame == -1.0):
            return Output("speaking", audio=np.full(32_768, 0.5, np.float32))
        return super().push(frame)


def ws_frame(payload: bytes, opcode: int = 2, fin: bool = True, masked: bool = True) -> bytes:
    """One client websocket frame, built by hand so it can be broken on purpose."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_ws(port: int, rcvbuf: int | None = None):
    """A websocket opened by hand on a plain socket (asyncio streams)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readuntil(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 101"), status[:80]
    return reader, writer


async def fuzz_messages(url: str, rng: np.random.Generator) -> list[str]:
    """Random and malformed protocol messages on one connection; it must stay usable."""
    ws = await WS.open(url)
    valid = [pack(Kind.AUDIO, encode_pcm16(np.zeros(640, np.float32))),
             pack(Kind.CONTROL, {"control": "reset"}), pack(Kind.CONTROL, {"control": "end_turn"})]
    messages = [rng.bytes(int(rng.integers(0, 3000))) for _ in range(150)]      # random bytes
    messages += [bytes([k]) + rng.bytes(int(rng.integers(0, 64))) for k in range(256)]  # kinds
    messages += [v[:int(rng.integers(0, len(v)))] for v in valid for _ in range(20)]  # truncated
    messages += [pack(Kind.AUDIO, b"\x00" * (LIMIT + 2))] * 3                    # oversized
    rng.shuffle(messages)
    for message in messages:
        await ws.ws.send_bytes(message)
    await ws.send_audio(np.zeros(1280 * 2, np.float32))
    errors = []
    while True:  # read until the probe's metadata: every message before it was handled
        msg = await ws.ws.receive(timeout=30)
        assert msg.type.name == "BINARY", f"fuzzed connection closed: {msg.type.name}"
        if msg.data[0] == Kind.ERROR:
            errors.append(msg.data[1:].decode())
        elif msg.data[0] == Kind.METADATA and len(errors) > 300 and b'"frame"' in msg.data:
            break
    await ws.close()
    return errors


async def broken_frames(port: int) -> None:
    """Websocket frames that break the framing itself: the server may close, never crash."""
    cases = [ws_frame(b"\x01\x00\x00", masked=False),            # unmasked client frame
             ws_frame(b"\x01\x00\x00", opcode=0x3),               # reserved opcode
             ws_frame(b"\x01\x00\x00")[:5],                        # header cut mid-mask
             ws_frame(b"\x01" + b"\x00" * 100)[:50],               # payload cut short
             ws_frame(b"\x01\x00", fin=False) + ws_frame(b"\x00\x00", opcode=0x2),  # bad fragments
             bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 62),     # claims an exabyte
             ws_frame(b"x" * 200, opcode=0x9)]                     # ping longer than 125 bytes
    for case in cases:
        reader, writer = await raw_ws(port)
        writer.write(case)
        await writer.drain()
        writer.close()  # and leave abruptly
    for _ in range(5):  # not HTTP at all
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(os.urandom(500))
        await writer.drain()
        writer.close()


async def stops_reading(port: int) -> int:
    """Asks for 64 KB per frame and never reads a byte; the server must cut it off."""
    reader, writer = await raw_ws(port, rcvbuf=4096)
    flood = ws_frame(pack(Kind.AUDIO, encode_pcm16(np.full(1280, -1.0, np.float32))))
    sent = 0
    try:
        for _ in range(3000):  # bounded: at most 3000 frames over at most ~30 s
            writer.write(flood)
            await asyncio.wait_for(writer.drain(), 10)
            sent += 1
            await asyncio.sleep(0.005)
            if reader.at_eof() or writer.is_closing():
                break
    except (ConnectionError, asyncio.TimeoutError):
        pass
    writer.close()
    return sent


def test_fuzzing_never_kills_the_server_or_other_sessions(start_server):
    server = start_server(ChattyFactory(), max_message_bytes=LIMIT, send_timeout_s=1.0,
                          queue_frames=200, max_sessions=32)
    port = int(server.url.rsplit(":", 1)[1])
    rng = np.random.default_rng(0)
    said = np.concatenate([speech_like(1.5), np.zeros(12_000, np.float32)] * 2)

    async def go():
        return await asyncio.gather(
            replay(server.ws_url, said, 16_000, end_turn=False, tail_s=1.0, pace=1.0),
            fuzz_messages(server.ws_url, rng), broken_frames(port), stops_reading(port))

    good, errors, _, flooded = asyncio.run(asyncio.wait_for(go(), 120))
    # the well-behaved session was served in full, in order, with its replies
    assert good.errors == [] and good.dropped == 0
    assert good.acknowledged == good.frames_sent == len(good.rtt_ms)
    assert len(good.first_audio_ms) == 2 and "speaking" in good.states
    # every malformed message got an error message, the connection stayed up
    assert any("unknown message kind" in e for e in errors)
    assert any("exceeds the limit" in e for e in errors)
    assert any("odd" in e for e in errors) and any("control message" in e for e in errors)
    # the client that stopped reading was cut off, not buffered without end
    stats = server.http_stats()
    assert stats["closed"].get("slow_reader") == 1, stats
    assert "error" not in stats["closed"], stats  # no internal error, whatever came in
    assert flooded < 3000
    assert stats["sessions_active"] == 0
    # and the server still serves
    again = asyncio.run(replay(server.ws_url, speech_like(0.3), 16_000, tail_s=0.5, pace=4.0))
    assert again.acknowledged == again.frames_sent
