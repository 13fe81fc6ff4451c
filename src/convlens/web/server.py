"""The HTTP server under the app: uvicorn, with deadlines for clients that connect and say nothing.

uvicorn closes an idle keep-alive connection, but a socket that never sends a request, or sends its
headers a byte at a time, stays open for ever; 1,100 of them used up 1,024 descriptors and every
new request failed. Here a request's headers must arrive within HEADER_SECONDS of its first byte
(or of the connection); past MAX_CONNECTIONS, the connection that has waited longest without a
request, or that is still trickling in a request body, is closed to make room, so a client that
asks at once is served even during a flood (520 bodies trickled at 1 byte/s reset every new
connection while they lasted); a body must arrive within BODY_SECONDS; and the process's
descriptor limit is raised to its hard limit.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import logging
import resource
import socket
import sys

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import UserError

HEADER_SECONDS = 10.0  # from a connection (or the first byte of a request) to the end of its headers
BODY_SECONDS = 30.0  # to receive a whole request body: 2 MB at 70 KB/s
IDLE_SECONDS = 5  # a keep-alive connection with no next request is closed after this
MAX_CONNECTIONS = 512  # open at once; beyond, the longest-silent one is closed
# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). The event
# loop and the model thread pass it back and forth: each torch call on the model thread lets it go,
# and taking it back waited up to 5 ms behind the event loop's Python. At 0.1 ms, 50 clients drawing
# strokes got 542-585 requests/s against 411-436/s (p95 136-156 ms against 169-178 ms; 2-core AMD
# EPYC, AVX2); 0.2 ms gave 463/s, 0.02 ms 485/s.
GIL_SWITCH_SECONDS = 1e-4
log = logging.getLogger("convlens.web")


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request headers are late."""

    header_seconds = HEADER_SECONDS
    max_connections = MAX_CONNECTIONS
    _deadline: asyncio.TimerHandle | None = None  # the headers' deadline, then the body's
    _in_body = False  # headers read, body still arriving
    _last_warning = 0.0  # class-wide: one log line per flood, not one per connection
    _arrivals = itertools.count()  # the order connections came in (uvloop's clock ties within one loop turn)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arrival = next(self._arrivals)
        self._arm()
        if len(self.connections) > self.max_connections:
            silent = [c for c in self.connections if isinstance(c, DeadlineProtocol) and (c._silent or c._in_body)]
            oldest = min(silent, key=lambda c: c._arrival, default=self)
            if self.loop.time() - DeadlineProtocol._last_warning > HEADER_SECONDS:
                DeadlineProtocol._last_warning = self.loop.time()
                log.warning("convlens: over %d connections open; closing those silent longest", self.max_connections)
            oldest._close()

    @property
    def _silent(self) -> bool:
        """No request of this connection has reached the app: silent, or still sending its first headers."""
        return self._deadline is not None and self.cycle is None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._in_body = True
        # The app answers a late body with a 408 at BODY_SECONDS; this closes the socket if the app is stuck too.
        self._deadline = self.loop.call_later(BODY_SECONDS + self.header_seconds, self._close)

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_body = False
        super().on_message_complete()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser refused (a bad Content-Length, say) in JSON, as every other error."""
        body = json.dumps({"error": f"{msg.rstrip('.')}: malformed HTTP"}).encode()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                             b"x-content-type-options: nosniff\r\nconnection: close\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_seconds, self._close)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()


def raise_descriptor_limit() -> int:
    """Raise this process's open-file limit to its hard limit (often 1,024 soft of 1,048,576); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def listening_socket(host: str, port: int) -> socket.socket:
    """Return a socket bound to (host, port) and listening; a port in use is one line, said before any other."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    except OSError as e:
        in_use = e.errno == errno.EADDRINUSE
        why = "is in use (another convlens serve?); give another --port" if in_use else f"cannot be opened ({e.strerror})"
        raise UserError(f"port {port} on {host} {why}") from None


def run(app, listener: socket.socket) -> None:
    """Serve the app on a listening socket until interrupted, with the deadlines and limits above."""
    import uvicorn

    raise_descriptor_limit()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)  # this process serves and does nothing else
    # No proxy stands in front of a local page: proxy_headers off skips a middleware on every request.
    config = uvicorn.Config(app, log_level="warning", http=DeadlineProtocol, timeout_keep_alive=IDLE_SECONDS,
                            proxy_headers=False)
    uvicorn.Server(config).run(sockets=[listener])
