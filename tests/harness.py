"""Drive the live page for tests and benches: `convlens serve` in its own process, Debian's Chromium headless.

The server runs as a separate process, as a user runs it, so a browser or a load generator in
this process never shares its interpreter lock with the server being measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("CONVLENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_available() -> bool:
    """Return whether Debian's Chromium is installed (make test installs it)."""
    return Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerURL(str):
    """The base URL of a started server, with the server's process id (for its memory, in benchmarks)."""

    pid: int


@contextlib.contextmanager
def running_server(run: str | Path, timeout: float = 60.0, *options: str):
    """Start `convlens serve RUN [OPTIONS]` on a free loopback port; yield its base URL (a ServerURL); stop it afterwards."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "convlens", "serve", str(run), "--port", str(port), *options],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = ServerURL(f"http://127.0.0.1:{port}")
    url.pid = process.pid
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"convlens serve exited: {process.stdout.read()}")
            try:
                with urllib.request.urlopen(f"{url}/api/runs", timeout=2) as response:
                    json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"convlens serve did not answer on {url} within {timeout} s") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def chromium_page(width: int = 1500, height: int = 1000):
    """Yield a Playwright page in headless Debian Chromium, with the page's errors collected in page.errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []
            page.on("pageerror", lambda e: page.errors.append(str(e)))
            yield page
        finally:
            browser.close()


# Strokes of digits on the 280x280 pad, in CSS pixels: each a list of (x, y) points.
DIGIT_STROKES = {
    1: [[(140, 40), (140, 240)]],
    7: [[(70, 50), (210, 50), (115, 240)]],
    4: [[(150, 40), (70, 170), (210, 170)], [(170, 90), (170, 250)]],
    0: [[(140, 40), (80, 80), (70, 150), (95, 220), (150, 240), (200, 200), (210, 120), (185, 60), (140, 40)]],
}


def draw_with_mouse(page, strokes, steps: int = 6) -> None:
    """Draw strokes on the pad with the mouse, as a user would."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=steps)
        page.mouse.up()


# Pointer events at 60 Hz along a stroke, dispatched inside the page: the rate a real mouse or
# finger delivers, without the test driver's own round trips between events.
DRAW_IN_PAGE = """async ([strokes, pointsPerSegment]) => {
  const pad = document.getElementById('pad'), r = pad.getBoundingClientRect();
  const fire = (type, x, y) => pad.dispatchEvent(new PointerEvent(type, {
    clientX: r.left + x, clientY: r.top + y, pointerId: 1, bubbles: true, pressure: 0.5, buttons: 1 }));
  const frame = () => new Promise((resolve) => setTimeout(resolve, 1000 / 60));
  for (const stroke of strokes) {
    fire('pointerdown', ...stroke[0]);
    for (let s = 1; s < stroke.length; s++) {
      const [x0, y0] = stroke[s - 1], [x1, y1] = stroke[s];
      for (let i = 1; i <= pointsPerSegment; i++) {
        await frame();
        fire('pointermove', x0 + (x1 - x0) * i / pointsPerSegment, y0 + (y1 - y0) * i / pointsPerSegment);
      }
    }
    fire('pointerup', ...stroke[stroke.length - 1]);
  }
}"""


def wait_until_idle(page, timeout_ms: int = 10000) -> None:
    """Wait until the page has no drawing request in flight or pending."""
    page.wait_for_function("() => window.convlensIdle && window.convlensIdle()", timeout=timeout_ms)
