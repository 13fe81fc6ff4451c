"""The live page's server under hostile clients, over real sockets: silent, trickling, too many, leaving mid-upload.

The server runs in a thread of this process (uvicorn with convlens's protocol), with deadlines
shortened from seconds to about one so the tests stay quick; everything else is as `serve` runs it.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time

import pytest
import uvicorn
from conftest import copy_run
from PIL import Image
from safetensors.torch import save_file
import torch

from convlens import runs
from convlens.web import app as app_module
from convlens.web.app import create_app
from convlens.web.server import DeadlineProtocol

HEADER_SECONDS, MAX_CONNECTIONS = 1.0, 64


class QuickDeadlines(DeadlineProtocol):
    header_seconds = HEADER_SECONDS
    max_connections = MAX_CONNECTIONS


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    """Yield (host, port, runs folder) of a real server over a copy of the small trained run."""
    folder = tmp_path_factory.mktemp("served")
    copy_run(trained_run, folder / "digits")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(folder, "digits"), log_level="warning", http=QuickDeadlines,
                            timeout_keep_alive=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield "127.0.0.1", listener.getsockname()[1], folder
    server.should_exit = True
    thread.join(10)


def request(address, raw: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(raw)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def get(address, path: str) -> tuple[int, bytes]:
    answer = request(address, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def closed_by_server_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_silent_connections_are_closed_and_requests_go_on(server):
    host, port, _ = server
    silent = [socket.create_connection((host, port)) for _ in range(MAX_CONNECTIONS - 4)]
    assert get((host, port), "/api/runs")[0] == 200  # served while the silent ones wait
    started = time.monotonic()
    assert all(closed_by_server_within(s, HEADER_SECONDS + 3) for s in silent)
    assert time.monotonic() - started < HEADER_SECONDS + 3
    for s in silent:
        s.close()


def test_headers_trickled_a_byte_at_a_time_are_cut_off(server):
    host, port, _ = server
    with socket.create_connection((host, port)) as s:
        started = time.monotonic()
        raw = b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
        for byte in raw:  # one byte every 50 ms: the request never completes its headers
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if time.monotonic() - started > HEADER_SECONDS + 3:
                pytest.fail("the trickling connection was still open after the header deadline")
            time.sleep(0.05)
        assert closed_by_server_within(s, 3)


def test_past_the_cap_the_longest_silent_connection_makes_room_for_a_request(server):
    host, port, _ = server
    held = [socket.create_connection((host, port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        assert get((host, port), "/api/runs")[0] == 200  # served during the flood, long before the deadline
        assert closed_by_server_within(held[0], 0.5)  # the first silent one made room
        assert not closed_by_server_within(held[-1], 0.05)
    finally:
        for s in held:
            s.close()


def test_a_client_leaving_mid_upload_is_one_log_line(server, caplog):
    host, port, _ = server
    caplog.set_level(logging.WARNING)
    with socket.create_connection((host, port)) as s:
        s.sendall(b"POST /api/runs/digits/analyse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 100000\r\n\r\n" + b"\x89PNG" + b"\0" * 1000)
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not caplog.records:
        time.sleep(0.05)
    time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "left during its upload (1004 bytes received)" in lines[0], lines
    assert not any(r.exc_info for r in caplog.records)


def test_a_body_trickled_past_its_deadline_is_a_408(server, monkeypatch):
    host, port, _ = server
    monkeypatch.setattr(app_module, "BODY_SECONDS", 0.5)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /api/runs/digits/analyse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 100\r\nConnection: close\r\n\r\n\x89PNG")
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408") and answer.endswith(b'{"error":"the request body did not arrive within 0.5 s"}')


def test_after_a_408_the_server_closes_the_socket_while_the_body_still_trickles(server, monkeypatch):
    host, port, _ = server
    monkeypatch.setattr(app_module, "BODY_SECONDS", 0.5)
    with socket.create_connection((host, port)) as s:
        s.sendall(b"POST /api/runs/digits/analyse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                  b"Content-Length: 100\r\n\r\n\x89PNG")
        s.settimeout(0.1)
        answer, answered, closed = b"", None, None
        started = time.monotonic()
        while closed is None and time.monotonic() - started < 8:
            try:
                s.sendall(b"\0")  # a byte every 0.1 s: never idle, never whole (96 bytes to go)
                chunk = s.recv(65536)
                if not chunk:
                    closed = time.monotonic()
                answer += chunk
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic()
            if answered is None and answer.startswith(b"HTTP/1.1 408"):
                answered = time.monotonic()
    assert answered is not None, answer
    assert closed is not None and closed - answered < 1.0, "the socket stayed open after the 408"


def test_past_the_cap_the_oldest_stuck_upload_makes_room_for_a_request(server, caplog):
    host, port, _ = server
    caplog.set_level(logging.WARNING)
    held = [socket.create_connection((host, port)) for _ in range(MAX_CONNECTIONS)]
    try:
        for s in held:  # headers complete, a body that never comes: not silent, but stuck
            s.sendall(b"POST /api/runs/digits/analyse HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 100000\r\n\r\n\x89PNG")
        time.sleep(0.3)
        assert get((host, port), "/api/runs")[0] == 200
        assert closed_by_server_within(held[0], 0.5)
        assert not closed_by_server_within(held[-1], 0.05)
    finally:
        for s in held:
            s.close()
    # Each upload's handler logs the client's leaving; wait for all of them, or they land in the next test's log.
    deadline = time.monotonic() + 10
    while sum("left during its upload" in r.getMessage() for r in caplog.records) < MAX_CONNECTIONS:
        assert time.monotonic() < deadline, "the stuck uploads' handlers did not all end"
        time.sleep(0.05)


@pytest.mark.parametrize("length", [b"12x", b"-5", b"1, 2"])
def test_a_request_the_parser_refuses_is_a_json_400(server, length):
    answer = request(server[:2], b"POST /api/runs/digits/analyse HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 b"Content-Length: " + length + b"\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 4") and b"application/json" in head.lower(), answer
    assert "error" in json.loads(body)


def test_an_unexpected_error_is_a_json_500_and_one_log_line(server, monkeypatch, caplog):
    host, port, _ = server
    caplog.set_level(logging.WARNING)

    def broken(self):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app_module.LiveRun, "info", broken)
    status, body = get((host, port), "/api/runs/digits")
    assert status == 500 and body == b'{"error":"internal error (RuntimeError); the server\'s log has the details"}'
    assert [r.getMessage() for r in caplog.records] == ["convlens: GET /api/runs/digits failed: RuntimeError: a bug"]


def test_a_corrupt_oip_file_is_named_not_a_404(server):
    host, port, folder = server
    path = runs.Run(folder / "digits").oip_file("conv1")
    path.parent.mkdir(exist_ok=True)
    save_file({"images": torch.zeros(1, 1, 1, 28, 28)}, str(path))  # no activation, no index
    try:
        status, body = get((host, port), "/api/runs/digits/maps/conv1/0")
    finally:
        path.unlink()
    assert status == 400 and b"lacks the tensor 'activation'" in body


def png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, "PNG")
    return out.getvalue()


def post(address, path: str, body: bytes, kind: str) -> tuple[int, bytes]:
    answer = request(address, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
                              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def test_a_huge_png_is_refused_from_its_header_and_a_big_photo_is_shrunk_while_decoding(server):
    host, port, _ = server
    data = png(4096)
    assert len(data) < 20_000  # small on the wire, 16.7 million pixels decoded
    started = time.monotonic()
    status, body = post((host, port), "/api/runs/digits/analyse", data, "image/png")
    assert status == 400 and b"4096x4096; the limit is 4,194,304 pixels" in body
    assert time.monotonic() - started < 0.5
    photo = io.BytesIO()
    Image.new("RGB", (4000, 3000), "white").save(photo, "JPEG")
    status, body = post((host, port), "/api/runs/digits/analyse", photo.getvalue(), "image/jpeg")
    assert status == 200, body


def test_metrics_holding_nan_are_a_400_naming_the_file_not_a_500(server):
    host, port, folder = server
    metrics = folder / "digits" / runs.METRICS
    metrics.write_text('{"dataset": "mnist", "test_accuracy": NaN, "test_loss": 0.1, "per_class_accuracy": {}, '
                       '"confusion_matrix": [], "most_confused": []}')
    try:
        status, body = get((host, port), "/api/runs/digits")
    finally:
        metrics.unlink()
    assert status == 400 and b"metrics.json is not what convlens wrote: at test_accuracy" in body


def test_a_port_in_use_is_one_line_before_any_serving_is_announced(trained_run):
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    try:
        done = subprocess.run([sys.executable, "-m", "convlens", "serve", str(trained_run), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    finally:
        held.close()
    assert done.returncode == 2 and "serving" not in done.stdout
    assert done.stderr.strip().splitlines() == [f"convlens serve: error: port {port} on 127.0.0.1 is in use "
                                                "(another convlens serve?); give another --port"]
