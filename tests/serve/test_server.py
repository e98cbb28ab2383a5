"""The server: handshake, audio round trip, controls, errors that keep the connection usable,
limits (sessions, idle, queue), slow and failing models, clean shutdown."""

import asyncio
import time

import numpy as np
import pytest

from speechlm.serve.client import replay
from speechlm.serve.protocol import PROTOCOL, Kind, pack

from .conftest import WS, CrashingFactory, FailingFactory, SlowFactory, speech_like


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_handshake_and_parrot_round_trip(start_server, mode):
    server = start_server(worker_mode=mode)
    said = np.concatenate([speech_like(1.0), np.zeros(8000, np.float32)])
    result = run(replay(server.ws_url, said, 16_000, end_turn=False, tail_s=1.5, pace=4.0))
    hs = result.handshake
    assert hs["protocol"] == PROTOCOL and hs["model"] == "parrot"
    assert hs["sample_rate"] == 16_000 and hs["frame_samples"] == 1280 and hs["frame_ms"] == 80
    assert result.acknowledged == result.frames_sent > 0 and result.dropped == 0
    assert len(result.rtt_ms) == result.frames_sent
    assert result.states[:2] == ["listening", "speaking"]
    reply = np.concatenate(result.audio)
    assert reply.size >= 16_000  # the whole second of "speech" came back ...
    np.testing.assert_allclose(reply[:16_000], said[:16_000], atol=1 / 32768)  # ... unchanged
    assert len(result.first_audio_ms) == 1 and result.errors == []
    stats = server.http_stats()
    assert stats["sessions_active"] == 0 and stats["closed"] == {"client": 1}
    assert stats["workers"]["mode"] == mode and stats["rss_bytes"] > 0


def test_end_turn_answers_and_reset_clears(start_server):
    async def go(url):
        ws = await WS.open(url)
        await ws.send_audio(speech_like(0.4))  # 5 frames, no pause: the parrot keeps listening
        await ws.control("end_turn")
        audio = await ws.next(Kind.AUDIO)
        meta = await ws.meta()
        while meta.get("control") != "end_turn":
            meta = await ws.meta()
        assert meta["state"] == "speaking" and meta["audio_samples"] * 2 == len(audio)
        await ws.control("reset")
        while (meta := await ws.meta()).get("control") != "reset":
            pass
        assert meta["state"] == "listening"
        await ws.control("pause")
        await ws.send_audio(speech_like(0.4))  # ignored while paused
        assert (await ws.meta())["state"] == "paused"
        await ws.control("start")
        meta = await ws.meta()
        assert meta["control"] == "start" and meta["state"] != "paused"
        await ws.close()

    run(go(start_server().ws_url))


@pytest.mark.parametrize("message, needle", [
    (b"\x01\x00\x00\x00", "odd"),
    (b"\x01", "without samples"),
    (b"\x09hello", "unknown message kind 0x09"),
    (b"\x00{}", "server only"),
    (b"\x03{not json", "control message"),
    (b"\x03" + b'{"control": "sing"}', "control message"),
    (b"\x01" + b"\x00" * 4002, "exceeds the limit of 4000"),
])
def test_bad_messages_get_an_error_and_the_session_goes_on(start_server, message, needle):
    async def go(url):
        ws = await WS.open(url)
        await ws.ws.send_bytes(message)
        assert needle in await ws.error()
        await ws.send_audio(np.zeros(1280, np.float32))
        assert (await ws.meta())["frame"] == 0  # still served
        await ws.close()

    run(go(start_server(max_message_bytes=4000).ws_url))


def test_text_frames_and_oversized_beyond_the_hard_cap(start_server):
    async def go(url):
        ws = await WS.open(url)
        await ws.ws.send_str("hello")
        assert "binary messages" in await ws.error()
        await ws.ws.send_bytes(b"\x01" + b"\x00" * 40_000)  # 10x the limit: aiohttp closes (1009)
        close = await ws.ws.receive()
        assert close.type.name == "CLOSE" and close.data == 1009, close  # message too big
        await ws.close()
        ok = await WS.open(url)  # the server is fine
        assert ok.handshake["protocol"] == PROTOCOL
        await ok.close()

    server = start_server(max_message_bytes=4000)
    run(go(server.ws_url))


def test_max_sessions_refuses_politely(start_server):
    async def go(url):
        first, second = await WS.open(url), await WS.open(url)
        third = await WS.open(url)
        assert "server full: 2 sessions" in third.handshake["refused"]
        close = await third.ws.receive()
        assert close.type.name == "CLOSE" and close.data == 1013, close
        await asyncio.gather(first.close(), second.close(), third.close())

    server = start_server(max_sessions=2)
    run(go(server.ws_url))
    assert server.http_stats()["rejected_full"] == 1


def test_idle_connections_are_closed(start_server):
    async def go(url):
        ws = await WS.open(url)
        assert "idle for 0.5 s" in await ws.error(timeout=5)
        await ws.close()

    server = start_server(idle_timeout_s=0.5)
    run(go(server.ws_url))
    assert server.http_stats()["closed"] == {"idle": 1}


def test_a_slow_model_drops_old_audio_and_never_blocks_other_sessions(start_server):
    async def go(url):
        slow = await WS.open(url)
        for _ in range(12):  # 12 frames at once; the model takes 0.4 s per frame
            await slow.send_audio(np.zeros(1280, np.float32))
        other = await WS.open(url)  # a new session while the slow one has a queue to work off
        other_ready = time.monotonic()
        metas = [await slow.meta(timeout=30)]
        while metas[-1]["frame"] != 11:
            metas.append(await slow.meta(timeout=30))
        last_frame_done = time.monotonic()
        await asyncio.gather(slow.close(), other.close())
        return other_ready, last_frame_done, metas

    server = start_server(SlowFactory(delay_s=0.4), queue_frames=3, workers=2)
    other_ready, last_frame_done, metas = run(go(server.ws_url))
    # the other session was served while the slow one still had at least 3 frames (1.2 s) to do
    assert other_ready < last_frame_done - 0.8
    # at most 1 frame in the model + the newest 3 queued were kept; the rest dropped and counted
    frames = [m["frame"] for m in metas]
    assert frames[-3:] == [9, 10, 11] and len(frames) <= 4 and frames == sorted(frames)
    assert metas[-1]["dropped"] == 12 - len(frames) >= 8
    stats = server.http_stats()
    assert stats["frames_dropped"] == metas[-1]["dropped"] and stats["frames_in"] == 12


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_failing_model_ends_its_session_only(start_server, mode):
    async def go(url):
        ws = await WS.open(url)
        for _ in range(3):
            await ws.send_audio(np.zeros(1280, np.float32))
        assert "internal error: RuntimeError: model bug" in await ws.error()
        await ws.close()
        again = await WS.open(url)
        assert again.handshake["model"] == "failing"
        await again.close()

    server = start_server(FailingFactory(), worker_mode=mode)
    run(go(server.ws_url))
    assert server.http_stats()["closed"]["error"] == 1


def test_a_dead_worker_ends_only_its_sessions_and_is_replaced(start_server):
    async def go(url):
        doomed, other = await WS.open(url), await WS.open(url)  # one on each worker
        await doomed.send_audio(np.full(1280, -1.0, np.float32))  # its worker exits (a crash)
        error = await doomed.error()
        assert error.startswith("internal error: WorkerLost: worker process ") and \
            "exited unexpectedly; the 1 session it ran ended" in error, error
        close = await doomed.ws.receive()
        assert close.type.name == "CLOSE" and close.data == 1011
        await doomed.close()
        for _ in range(3):  # the other worker's session goes on
            await other.send_audio(speech_like(0.08))
            assert (await other.meta())["state"] == "listening"
        deadline = time.monotonic() + 60
        while server.http_stats()["workers"]["alive"] < 2:  # the replacement is starting
            assert time.monotonic() < deadline, server.http_stats()
            await asyncio.sleep(0.2)
        new = [await WS.open(url) for _ in range(2)]  # sessions open on both workers again
        for ws in new:
            await ws.send_audio(speech_like(0.08))
            assert (await ws.meta())["state"] == "listening"
        await asyncio.gather(other.close(), *(ws.close() for ws in new))

    server = start_server(CrashingFactory())
    run(go(server.ws_url))
    stats = server.http_stats()
    assert stats["closed"] == {"error": 1, "client": 3}, stats
    assert stats["workers"]["replaced"] == 1 and stats["workers"]["sessions_lost"] == 1
    assert stats["workers"]["sessions_per_worker"] == [0, 0]


class Unopenable(SlowFactory):
    def new_session(self):
        raise MemoryError("no room for another KV cache")


def test_a_session_that_cannot_open_is_refused_with_the_reason(start_server):
    async def go(url):
        ws = await WS.open(url)
        assert ws.handshake["refused"].startswith("cannot open a session: MemoryError: no room")
        close = await ws.ws.receive()
        assert close.type.name == "CLOSE" and close.data == 1011
        await ws.close()

    server = start_server(Unopenable())
    run(go(server.ws_url))
    assert server.http_stats()["closed"] == {"error": 1}


def test_shutdown_tells_and_closes_every_client(start_server):
    server = start_server()

    async def go():
        clients = [await WS.open(server.ws_url) for _ in range(3)]
        server.loop.call_soon_threadsafe(server.stop_event.set)
        for ws in clients:
            assert "shutting down" in await ws.error()
            close = await ws.ws.receive()  # (the client's reply may find the socket gone: 1006)
            assert close.type.name == "CLOSE" and close.data == 1001, close
            await ws.close()

    run(go())
    server.stop()
    assert server.stats.closed == {"shutdown": 3} and server.stats.sessions_active == 0


def test_page_and_static_files_are_served(start_server):
    import urllib.request

    server = start_server()
    for path, needle in [("/", b"<title>speechlm serve</title>"), ("/static/app.js", b"getUserMedia"),
                         ("/static/worklet.js", b"registerProcessor"),
                         ("/static/style.css", b".badge")]:
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            assert needle in response.read(), path
