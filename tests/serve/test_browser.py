"""The page in headless Chromium with a fake microphone fed from a WAV: audio comes back, the
state changes are shown (including an interruption), latency is measured; a screenshot is taken.

Needs Debian's chromium (/usr/bin/chromium) and the playwright package (its driver, not its
browser download). Set SPEECHLM_SERVE_SCREENSHOT=PATH to keep the screenshot (docs/serve.md).
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from speechlm.data.audio import write_wav

from .conftest import speech_like

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                                "(apt-get install chromium); the browser test needs it")
# Flags that work on machines without network or GPU (as root, in a container).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]


def test_page_talks_to_the_parrot_through_a_fake_microphone(start_server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    # 1.2 s of "speech", 1.5 s of quiet, looped by Chromium: the parrot answers in the quiet and
    # is talked over when the speech comes round again
    mic = tmp_path / "mic.wav"
    write_wav(mic, np.concatenate([speech_like(1.2), np.zeros(24_000, np.float32)]))
    upload = tmp_path / "upload.wav"
    write_wav(upload, np.concatenate([speech_like(0.8, seed=1), np.zeros(4000, np.float32)]))
    server = start_server()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS + [
            f"--use-file-for-fake-audio-capture={mic}"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.goto(server.url + "/")
            page.wait_for_function("window.speechlm.handshake !== null", timeout=30_000)
            assert "parrot" in page.inner_text("#model")
            assert page.inner_text("#state") == "listening"

            page.click("#mic")
            page.wait_for_function(
                "window.speechlm.states.includes('speaking') && "
                "window.speechlm.states.includes('interrupted') && "
                "window.speechlm.audioSamples > 8000 && window.speechlm.firstAudio.length > 0",
                timeout=60_000)
            stats = page.evaluate("window.speechlm")
            assert stats["errors"] == []
            assert stats["framesSent"] > 20 and len(stats["rtt"]) > 20
            history = page.inner_text("#history")
            assert "speaking" in history and "interrupted" in history
            assert page.inner_text("#rtt-p50").endswith("ms")
            page.screenshot(path=str(tmp_path / "page.png"))

            page.click("#stop")
            received = page.evaluate("window.speechlm.audioSamples")
            page.set_input_files("#file", str(upload))  # the upload path streams at real time
            page.wait_for_function(f"window.speechlm.audioSamples >= {received} + 12000",
                                   timeout=30_000)
            assert "file sent: upload.wav" in page.inner_text("#log")
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
    keep = os.environ.get("SPEECHLM_SERVE_SCREENSHOT")
    if keep:
        shutil.copy(tmp_path / "page.png", Path(keep))
