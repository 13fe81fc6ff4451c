"""Live page speed (issue 7): stroke-to-maps latency in Chromium, server compute, and a 50-client load test.

usage: python bench/web_speed.py [RUN] [--clients 50] [--seconds 30] [--load-only] [--baseline-src DIR] [--json PATH]
       (default RUN: trains `simple` for 2 epochs first)

1. Server compute, in this process: LiveRun.analyse_drawing on 300 drawings (test digits scaled up to
   the pad's 140x140), p50/p95; target p95 < 30 ms.
2. Stroke to updated maps in headless Chromium against `convlens serve`: pointer events at 60 Hz
   dispatched in the page, from the first stroke event not yet sent to the frame that shows the
   new maps; target p95 < 100 ms. Also the server's own compute time as the page saw it, and the
   same strokes driven by Playwright's mouse (the driver adds its own round trips between events).
3. Load: N concurrent clients on loopback for S seconds, each looping over drawings, test images,
   run info and map details; errors must be zero; p50/p95/p99 per request, requests/s, and the
   server's resident memory before and after (issue 18: 100 clients for 60 s). Run three times in the
   same session (issue 20: 50 clients, p95 <= 150 ms and >= 5x the baseline's requests/s; one client
   alone p95 <= 30 ms, measured with --clients 1):
   - the baseline, as the page was: every drawing with its attribution, each analysis alone
     (`serve --max-batch 1`), or, with --baseline-src, served by another source tree: the code as it
     was when issue 20 was filed is `git worktree add /tmp/issue20 0ec38d9`, then
     `--baseline-src /tmp/issue20/src`;
   - the same requests with dynamic batching;
   - the page as it is: a client draws strokes of STROKE_SECONDS, sending frames back to back without
     the attribution overlay and, when the pen lifts, the finished drawing with it; batched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from convlens import RunConfig, train
from convlens.speed import cpu_description
from convlens.web.live import LiveRun

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the browser harness lives with the tests
from harness import DIGIT_STROKES, DRAW_IN_PAGE, chromium_page, draw_with_mouse, running_server, wait_until_idle  # noqa: E402


STROKE_SECONDS = 0.5  # one stroke of a digit drawn by hand


def resident_mb(pid: int) -> float:
    """Return a process's resident memory (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def drawings(live: LiveRun, count: int) -> list[bytes]:
    """Return test digits as the pad would send them: 140x140 raw grey bytes."""
    images = live.dataset.test_images[:count].float()[:, None]  # (N, 1, 28, 28)
    big = F.interpolate(images, size=(140, 140), mode="bilinear", align_corners=False)
    return [bytes(b[0].round().clamp(0, 255).to(torch.uint8).flatten().tolist()) for b in big]


def server_compute(run_dir: str) -> dict:
    live = LiveRun(run_dir)
    samples = []
    for data in drawings(live, 300):
        start = time.perf_counter()
        live.analyse_drawing(data, 140, 140)
        samples.append((time.perf_counter() - start) * 1000)
    return {"requests": len(samples), "p50_ms": percentile(samples, 0.5), "p95_ms": percentile(samples, 0.95)}


def browser_latency(url: str, repeats: int) -> dict:
    rows = {}
    with chromium_page() as page:
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        for driver in ("in-page 60 Hz", "playwright mouse"):
            page.evaluate("() => { window.convlens.latencies = []; window.convlens.timings = []; }")
            for _ in range(repeats):
                for digit, strokes in DIGIT_STROKES.items():
                    page.click("#clear")
                    if driver == "playwright mouse":
                        draw_with_mouse(page, strokes)
                    else:
                        page.evaluate(DRAW_IN_PAGE, [strokes, 6])
                    wait_until_idle(page)
            latencies = page.evaluate("window.convlens.latencies")
            timings = page.evaluate("window.convlens.timings")
            rows[driver] = {
                "updates": len(latencies), "p50_ms": percentile(latencies, 0.5), "p95_ms": percentile(latencies, 0.95),
                "max_ms": max(latencies),
                "server_p50_ms": percentile([t["server"] for t in timings], 0.5),
                "server_p95_ms": percentile([t["server"] for t in timings], 0.95),
                "mean_parts_ms": {k: statistics.fmean(t[k] for t in timings) for k in ("queued", "encode", "request", "draw")},
            }
    return rows


class Connection:
    """A keep-alive HTTP/1.1 connection on raw asyncio streams.

    httpx spent about a core's worth of the 2 cores at 120 requests/s, so the load test measured its own
    client as much as the server; this reads a response with one header scan and one exact read.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        try:
            headers = await self.reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", headers)[1])
            payload = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.writer = None  # the server closed an idle connection: open a new one next time
            raise
        return int(headers[9:12]), payload


async def load_test(url, run: str, clients: int, seconds: float, bodies: list[bytes], strokes: bool = False) -> dict:
    """Closed-loop clients: each sends its next request when the last is answered. With `strokes`, a
    drawing is a stroke of frames as the page sends them; without, one request with its attribution."""
    latencies: list[float] = []
    errors: list[str] = []
    host, port = url.removeprefix("http://").split(":")

    async def client(k: int) -> None:
        rng = random.Random(k)
        connection = Connection(host, int(port))

        async def timed(method: str, path: str, body: bytes = b"", content_type: str = "") -> None:
            start = time.perf_counter()
            try:
                status, payload = await connection.request(method, path, body, content_type)
                if status != 200:
                    errors.append(f"{status} {payload[:100]!r}")
            except (OSError, asyncio.IncompleteReadError) as e:
                errors.append(repr(e))
            latencies.append((time.perf_counter() - start) * 1000)

        async def draw(attribution: bool) -> None:
            await timed("POST", f"/api/runs/{run}/drawing?width=140&height=140&attribution={str(attribution).lower()}",
                        rng.choice(bodies), "application/octet-stream")

        while time.monotonic() < deadline:
            roll = rng.random()
            if roll < 0.7 and strokes:
                lifted_at = time.monotonic() + STROKE_SECONDS
                while time.monotonic() < lifted_at:
                    await draw(attribution=False)
                await draw(attribution=True)
            elif roll < 0.7:
                await draw(attribution=True)
            elif roll < 0.9:
                await timed("GET", f"/api/runs/{run}/test?pick=random&seed={rng.randrange(2**31)}")
            elif roll < 0.95:
                await timed("GET", f"/api/runs/{run}")
            else:
                await timed("GET", f"/api/runs/{run}/maps/conv1/{rng.randrange(32)}")

    await Connection(host, int(port)).request("GET", f"/api/runs/{run}/maps/conv1/0")  # the top-input table is built once
    rss_before = resident_mb(url.pid)
    started = time.monotonic()
    deadline = started + seconds  # after the warm-up, so the clients get all of `seconds`
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.monotonic() - started
    return {"clients": clients, "seconds": elapsed, "requests": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "requests_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 0.5), "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99), "rss_mb_before": rss_before, "rss_mb_after": resident_mb(url.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run folder (default: train `simple` for 2 epochs)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="times each digit is drawn in the browser")
    parser.add_argument("--load-only", action="store_true", help="run the load test alone (no browser)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--baseline-src", help="serve the baseline from this source tree (its src folder) instead of "
                                               "this one with --max-batch 1: the code as it was, measured in this run")
    args = parser.parse_args()
    run_dir = args.run or tempfile.mkdtemp() + "/simple-mnist"
    if not args.run:
        train(RunConfig(), out=run_dir, progress=False)
    run = run_dir.rstrip("/").split("/")[-1]
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_description(),
              "baseline": args.baseline_src or "this code, each analysis alone (--max-batch 1)"}
    if not args.load_only:
        result["server_compute"] = server_compute(run_dir)
    bodies = drawings(LiveRun(run_dir), 64)
    with baseline_server(run_dir, args.baseline_src) as url:
        result["load_unbatched"] = asyncio.run(load_test(url, run, args.clients, args.seconds, bodies))
    with running_server(run_dir) as url:
        if not args.load_only:
            result["browser"] = browser_latency(url, args.repeats)
        result["load"] = asyncio.run(load_test(url, run, args.clients, args.seconds, bodies))
        result["load_strokes"] = asyncio.run(load_test(url, run, args.clients, args.seconds, bodies, strokes=True))
    print(f"torch {result['torch']}, {result['cpu']}")
    if not args.load_only:
        print_latencies(result)
    baseline = f"the code in {args.baseline_src}" if args.baseline_src else "each analysis alone"
    for name, load in ((baseline, result["load_unbatched"]), ("batched", result["load"]),
                       ("batched, the page's strokes", result["load_strokes"])):
        print(f"load, {name}: {load['clients']} clients for {load['seconds']:.0f} s: {load['requests']} requests "
              f"({load['requests_per_s']:.0f}/s), {load['errors']} errors, p50 {load['p50_ms']:.0f} ms, "
              f"p95 {load['p95_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms; server memory {load['rss_mb_before']:.0f} MB "
              f"before, {load['rss_mb_after']:.0f} MB after")
    base = result["load_unbatched"]["requests_per_s"]
    batched, page = result["load"], result["load_strokes"]
    print(f"batching: {batched['requests_per_s'] / base:.2f}x the requests/s; batching and the page's strokes: "
          f"{page['requests_per_s'] / base:.2f}x (target >= 5x with p95 <= 150 ms: "
          f"{'met' if page['requests_per_s'] >= 5 * base and page['p95_ms'] <= 150 else 'NOT met'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


@contextlib.contextmanager
def baseline_server(run_dir: str, source: str | None):
    """Yield the URL of the baseline server: this code analysing each drawing alone, or another source tree's."""
    if source is None:
        with running_server(run_dir, 60.0, "--max-batch", "1") as url:
            yield url
        return
    # The server inherits the environment: PYTHONPATH comes ahead of this checkout's editable install.
    with mock.patch.dict(os.environ, {"PYTHONPATH": str(Path(source).resolve())}), running_server(run_dir, 60.0) as url:
        yield url


def print_latencies(result: dict) -> None:
    s = result["server_compute"]
    print(f"server compute (in process, {s['requests']} drawings): p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms "
          f"(target p95 < 30 ms: {'met' if s['p95_ms'] < 30 else 'NOT met'})")
    for driver, b in result["browser"].items():
        parts = ", ".join(f"{k} {v:.1f}" for k, v in b["mean_parts_ms"].items())
        print(f"stroke to maps, {driver} ({b['updates']} updates): p50 {b['p50_ms']:.1f} ms, p95 {b['p95_ms']:.1f} ms, "
              f"max {b['max_ms']:.1f} ms; server p50 {b['server_p50_ms']:.1f} / p95 {b['server_p95_ms']:.1f} ms; "
              f"mean parts: {parts} (target p95 < 100 ms: {'met' if b['p95_ms'] < 100 else 'NOT met'})")


if __name__ == "__main__":
    main()
