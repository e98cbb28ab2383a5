"""`speechlm serve` and `speechlm client` as a user runs them: where it listens, the default
bind address, a client session, clean exit on SIGTERM and SIGINT, one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from speechlm.data.audio import write_wav

from .conftest import speech_like

ROOT = Path(__file__).resolve().parents[2]


def speechlm(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-m", "speechlm", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def start_serve(*args: str) -> tuple[subprocess.Popen, str]:
    proc = speechlm("serve", "--parrot", "--port", "0", *args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            return proc, line.split()[2]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no 'listening on' line: {proc.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_binds_loopback_by_default_and_stops_cleanly(tmp_path, sig):
    proc, url = start_serve()
    try:
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]

        wav = tmp_path / "hello.wav"
        write_wav(wav, np.concatenate([speech_like(0.8), np.zeros(8000, np.float32)]))
        client = speechlm("client", str(wav), "--url", f"ws://127.0.0.1:{port}/ws",
                          "--connections", "2", "--tail", "1", "--out", str(tmp_path / "out"),
                          "--json", str(tmp_path / "c.json"))
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        assert "round trip per frame (80 ms frames)" in out
        report = json.loads((tmp_path / "c.json").read_text())
        assert report["sessions"] == 2 and report["dropped"] == 0
        assert report["acknowledged"] == report["frames_sent"] > 0
        assert report["first_audio_ms"]["n"] == 2  # one reply per session
        assert (tmp_path / "out" / "reply-1.wav").stat().st_size > 16_000
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped: 2 sessions (2 client)" in out
    assert "Traceback" not in err


def test_serve_errors_are_one_line():
    for args, needle in [(["--session", "nope"], "expected MODULE:ATTR"),
                         (["--session", "json:dumps"], "neither a SessionFactory"),
                         (["--session", "json:JSONDecoder"], "is not a SessionFactory"),
                         (["--session", "no_such_module_x:f"], "cannot import"),
                         (["--parrot", "--host", "203.0.113.7"], "cannot listen on 203.0.113.7")]:
        proc = speechlm("serve", "--port", "0", *args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (args, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err


def test_client_says_when_no_server_listens(tmp_path):
    wav = tmp_path / "a.wav"
    write_wav(wav, speech_like(0.2))
    proc = speechlm("client", str(wav), "--url", "ws://127.0.0.1:9/ws")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot connect" in err, err
