"""The local web server: a FastAPI app over the runs in one folder, and `serve` to start it.

Secure by default: it binds to 127.0.0.1, accepts only Host headers naming the address it serves,
takes runs by name from its own listing (no path ever comes from the client), validates every
parameter, caps request bodies, and answers every mistake with a 4xx and a one-line JSON error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import torch
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import runs
from ..errors import UserError
from .batching import MAX_BATCH, Batcher
from .live import LiveRun
from .preprocess import MAX_UPLOAD_BYTES
from .server import BODY_SECONDS

log = logging.getLogger("convlens.web")

STATIC = Path(__file__).parent / "static"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
IMAGE_TYPES = ("image/png", "image/jpeg")
TOO_LARGE = f"request bodies are limited to {MAX_UPLOAD_BYTES:,} bytes"
OPEN_RUNS = 4  # runs kept loaded at once; each holds its model, test set and top-input tables
SECURITY_HEADERS = {
    # Everything the page needs is served from here; images come back as data: URLs.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# The headers as ASGI sends them, encoded once rather than for every answer.
_SECURITY_RAW = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_SECURITY_NAMES = {k for k, _ in _SECURITY_RAW}

MODEL_THREADS = min(2, os.cpu_count() or 1)


class NotFound(Exception):
    """A run the client named does not exist: a 404 (a KeyError inside the code is a 500, not a 404)."""


class RunFolder:
    """The runs the page may open: sub-folders of one folder that hold config.json and model.safetensors."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._open: OrderedDict[str, LiveRun] = OrderedDict()
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Return the run names, read afresh so that runs trained while the server runs appear."""
        return sorted(p.name for p in self.folder.iterdir() if self._is_run(p.name))

    def _is_run(self, name: str) -> bool:
        # A name that fits RUN_NAME has no separator and no leading dot: it can only be a child of the folder.
        path = self.folder / name
        return bool(RUN_NAME.fullmatch(name)) and (path / runs.CONFIG).is_file() and (path / runs.WEIGHTS).is_file()

    def get(self, name: str) -> LiveRun:
        """Return an open run by a name the listing would hold; checked on that one folder, not by a rescan."""
        self._check(name)
        with self._lock:
            if name not in self._open:
                self._open[name] = LiveRun(self.folder / name)
                while len(self._open) > OPEN_RUNS:
                    self._open.popitem(last=False)
            self._open.move_to_end(name)
            return self._open[name]

    def get_open(self, name: str) -> LiveRun | None:
        """Return the run if it is open already, else None: no loading, so the event loop may call it."""
        self._check(name)
        with self._lock:
            live = self._open.get(name)
            if live is not None:
                self._open.move_to_end(name)
            return live

    def _check(self, name: str) -> None:
        if not self._is_run(name):
            raise NotFound(f"no run named '{name[:130]}'; GET /api/runs lists them")


class LimitsAndHeaders:
    """ASGI middleware: refuse bodies announced as too large, add the security headers to every answer,
    and answer any unexpected error with a JSON 500 and one log line (never plain text, never a traceback).

    Plain ASGI rather than @app.middleware("http"), which costs a few ms per request.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_UPLOAD_BYTES):
            return await _error(413, TOO_LARGE)(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SECURITY_NAMES]
                message = message | {"headers": headers + _SECURITY_RAW}
            await send(message)

        started = False

        async def send_tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as e:  # noqa: BLE001 - the last line of defence: the client gets JSON, the log one line
            log.error("convlens: %s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(e).__name__, e)
            if not started:
                await _error(500, f"internal error ({type(e).__name__}); the server's log has the details")(
                    scope, receive, send)


def create_app(folder: Path, default_run: str | None = None, allowed_hosts: list[str] | None = None,
               max_batch: int = MAX_BATCH) -> FastAPI:
    """Return the app serving the page and its JSON API for the runs in `folder`."""
    runs_folder = RunFolder(folder)
    # All model work runs on one thread: requests on the one CPU model are serialised anyway (the batcher
    # gathers them), and torch's per-thread state stays warm (a fresh pool thread's first analysis took
    # 150 ms, not 15). Two intra-op threads for its batches: 375 requests/s against 298 with one, 50
    # clients on a 2-core Xeon; a lone client's p95 stayed 8-9 ms.
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convlens-model",
                                      initializer=lambda: torch.set_num_threads(MODEL_THREADS))

    async def in_model_thread(function, *args):
        return await asyncio.get_running_loop().run_in_executor(model_thread, function, *args)

    async def answer(function, *args) -> Response:
        return _json(await in_model_thread(function, *args))

    batcher = Batcher(in_model_thread, max_batch)

    async def open_run(name: str) -> LiveRun:
        # Loading a run is model work; an open one is found on the event loop, without a turn on the
        # model thread behind the batch it is running.
        return runs_folder.get_open(name) or await in_model_thread(runs_folder.get, name)

    async def analysis(live: LiveRun, prepare, *args) -> Response:
        return _json(await batcher.analyse(live, prepare, *args))

    app = FastAPI(title="convlens", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"])
    app.add_middleware(LimitsAndHeaders)

    @app.exception_handler(UserError)
    async def user_error(_request, e: UserError):
        return _error(400, str(e))

    @app.exception_handler(NotFound)
    async def not_found(_request, e: NotFound):
        return _error(404, str(e))

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_request, e: RequestValidationError):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return _error(422, f"bad parameter {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, e: StarletteHTTPException):
        return _error(e.status_code, str(e.detail))

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/runs")
    def list_runs():
        names = runs_folder.names()
        return {"runs": names, "default": default_run if default_run in names else (names[0] if names else None)}

    @app.get("/api/runs/{name}")
    async def run_info(name: str):
        live = await open_run(name)
        return await answer(live.info)

    @app.post("/api/runs/{name}/analyse")
    async def analyse(name: str, request: Request):
        """Analyse a PNG/JPEG body (a drawing or an upload), preprocessed the way the data set was made."""
        body = await _body(request, IMAGE_TYPES)
        if isinstance(body, JSONResponse):
            return body
        live = await open_run(name)
        return await analysis(live, live.prepare_upload, body)

    @app.post("/api/runs/{name}/drawing")
    async def drawing(name: str, request: Request, width: int = Query(ge=8, le=1024), height: int = Query(ge=8, le=1024),
                      attribution: bool = Query(True)):
        """Analyse the pad's raw grey bytes (width x height, bright ink on black), preprocessed like the data set;
        attribution=false leaves out the overlay (the page's frames during a stroke)."""
        body = await _body(request, ("application/octet-stream",))
        if isinstance(body, JSONResponse):
            return body
        live = await open_run(name)
        return await analysis(live, live.prepare_drawing, body, width, height, attribution)

    @app.get("/api/runs/{name}/test")
    async def test_image(name: str, pick: str = Query("index", pattern="^(index|random|class|misclassified)$"),
                         index: int = Query(0, ge=0, le=10_000_000), label: int | None = Query(None, ge=0, le=1000),
                         seed: int = Query(0, ge=0, le=2**31 - 1)):
        live = await open_run(name)
        if pick != "index":
            generator = torch.Generator().manual_seed(seed)
            index = await in_model_thread(live.pick_test_image, pick, label, generator)
        return await analysis(live, live.prepare_test_image, index)

    @app.get("/api/runs/{name}/maps/{layer}/{map_index}")
    async def map_detail(name: str, layer: str = PathParam(pattern=r"^[A-Za-z0-9_.]{1,64}$"),
                         map_index: int = PathParam(ge=0, le=100_000)):
        live = await open_run(name)
        return await answer(live.map_detail, layer, map_index)

    return app


async def _body(request: Request, accepted: tuple[str, ...]) -> bytes | JSONResponse:
    """Return the body, or the 415 for another Content-Type, or the 413 as soon as it grows past the limit
    (whatever Content-Length said)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in accepted:
        return _error(415, f"send the body with Content-Type {' or '.join(accepted)} (got '{kind[:60]}')")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_SECONDS):  # a body trickled in a byte at a time would hold the socket
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    return _error(413, TOO_LARGE)
                chunks.append(chunk)
    except TimeoutError:
        answer = _error(408, f"the request body did not arrive within {BODY_SECONDS:g} s")
        answer.headers["Connection"] = "close"  # the rest of the body may never come: free the socket now
        return answer
    except ClientDisconnect:
        log.warning("convlens: %s %s: the client left during its upload (%d bytes received)",
                    request.method, request.url.path, size)
        return _error(400, "the upload was cut short")
    return b"".join(chunks)


def _json(data) -> Response:
    """Return plain JSON-able data as a response. Skipping FastAPI's encoder walk saved ~2 ms per analysis, and
    orjson writes an analysis (55 kB) in 0.01 ms where the json module took 0.28 ms."""
    return Response(orjson.dumps(data), media_type="application/json")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


def resolve_folder(path: Path) -> tuple[Path, str | None]:
    """Return (runs folder, run to open first) for a run folder or a folder of runs."""
    path = Path(path)
    if (path / runs.CONFIG).is_file():
        return path.parent, path.name
    if path.is_dir() and RunFolder(path).names():
        return path, None
    raise UserError(f"{path} is neither a run folder nor a folder of runs; train one with convlens train")


def serve(path: Path, host: str = "127.0.0.1", port: int = 8000, max_batch: int = MAX_BATCH, log=print) -> None:
    """Serve the live page for a run (and its sibling runs) until interrupted."""
    from .server import listening_socket, run

    if not 0 < port < 65536:
        raise UserError(f"port {port} must be between 1 and 65535")
    if not 1 <= max_batch <= 1024:
        raise UserError(f"max batch {max_batch} must be between 1 and 1024")
    folder, first = resolve_folder(path)
    loopback = host in ("127.0.0.1", "localhost", "::1")
    hosts = ["127.0.0.1", "localhost", "[::1]"] if loopback else ["*"]
    app = create_app(folder, first, allowed_hosts=hosts, max_batch=max_batch)
    listener = listening_socket(host, port)  # before "serving ...": a port in use is said instead
    log(f"serving the runs in {folder} at http://{'127.0.0.1' if loopback else host}:{port}/  (Ctrl-C stops)")
    if not loopback:
        log(f"[yellow]listening on {host} makes the page reachable from other machines; it has no login[/]")
    run(app, listener)
