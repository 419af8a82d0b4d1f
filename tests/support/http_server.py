"""A loopback HTTP server with fault injection, for download tests and benchmarks.

A real :class:`http.server.ThreadingHTTPServer` on ``127.0.0.1`` (port chosen by the OS) runs
in a daemon thread and serves bodies registered by path, from memory or from a file. Each
route can misbehave in one of the ways real dataset hosts do, and counts what it saw so tests
can assert on the wire traffic rather than on timings:

>>> with LoopbackServer() as server:
...     url = server.add("/a.bin", b"0123456789", drop_after=4)
...     route = server.route("/a.bin")
>>> url.startswith("http://127.0.0.1:"), route.requests, route.bytes_sent
(True, 0, 0)

Faults (keyword arguments of :meth:`LoopbackServer.add`):

* ``drop_after=N``: send the headers with the full ``Content-Length``, then ``N`` body bytes,
  then close the connection (FIN). Applies to the first ``drop_times`` body answers (one by
  default); later requests behave.
* ``fail_first=K``: the first ``K`` requests answer 500.
* ``status=404`` (or any code): every request answers that status with a tiny body.
* ``no_range=True``: ``Range`` is ignored; every answer is 200 with the whole body.
* ``range_shift=D``: a ranged answer starts ``D`` bytes away from the asked start (a broken
  proxy), with a matching ``Content-Range``.
* ``stall_after=N, stall_seconds=S``: on the first body answer, pause ``S`` seconds after
  ``N`` bytes (to exercise read timeouts).
* ``headers={...}``: extra headers on every file answer (``Content-Encoding: gzip`` on a
  ``.tar.gz``, as some hosts send).
* ``trickle_seconds=S``: on the first ``trickle_times`` body answers, send one byte every
  ``S`` seconds (never tripping a read timeout longer than ``S``).

Validators: every file answer carries a strong ``ETag`` derived from the body (``etag=False``
leaves it out) and ``Last-Modified`` when ``last_modified`` is set. ``If-Range`` is honoured
as RFC 9110 says: a ranged request whose ``If-Range`` no longer matches gets the whole body
with 200; ``ignore_if_range=True`` plays a server or proxy that ignores it.
:meth:`LoopbackServer.replace` swaps a route's body (and so its ``ETag``) between attempts:
the file changed on the server.

To serve bytes other than the ones a test expects (a link that now serves another file),
register the other bytes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.background import BackgroundServer, QuietServer

logger = logging.getLogger(__name__)

_CHUNK = 256 * 1024


@dataclass
class Route:
    """One served path: its body, its faults and its counters (read them, do not write)."""

    body: bytes | Path = field(repr=False)
    status: int | None = None
    fail_first: int = 0
    drop_after: int | None = None
    drop_times: int = 1
    no_range: bool = False
    range_shift: int = 0
    stall_after: int | None = None
    stall_seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers of every file answer, e.g. a misleading ``Content-Encoding``."""
    trickle_seconds: float = 0.0
    trickle_times: int = 1
    etag: bool = True
    last_modified: str | None = None
    ignore_if_range: bool = False
    if_ranges: list[str | None] = field(default_factory=list)
    """The ``If-Range`` header of each request (``None`` when absent), in order."""
    _etag: tuple[object, str] | None = field(default=None, repr=False)
    requests: int = 0
    """Requests seen on this path, whatever was answered."""
    bytes_sent: int = 0
    """Body bytes written to the socket, over every answer that carried the file."""
    ranges: list[str | None] = field(default_factory=list)
    """The ``Range`` header of each request (``None`` when absent), in order."""
    statuses: list[int] = field(default_factory=list)
    """The status code of each answer, in order."""
    bodies_served: int = 0

    @property
    def size(self) -> int:
        return self.body.stat().st_size if isinstance(self.body, Path) else len(self.body)

    def etag_value(self) -> str:
        """A strong ETag of the body (computed once per body: benchmarks serve 256 MB)."""
        if self._etag is None or self._etag[0] is not self.body:
            data = self.body.read_bytes() if isinstance(self.body, Path) else self.body
            self._etag = (self.body, '"' + hashlib.sha1(data).hexdigest()[:16] + '"')
        return self._etag[1]

    def validators(self) -> dict[str, str]:
        out = {"ETag": self.etag_value()} if self.etag else {}
        if self.last_modified:
            out["Last-Modified"] = self.last_modified
        return out

    def read(self, start: int, stop: int) -> bytes | memoryview:
        if isinstance(self.body, Path):
            with open(self.body, "rb") as fh:
                fh.seek(start)
                return fh.read(stop - start)
        return memoryview(self.body)[start:stop]


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, stop)`` of a single ``bytes=`` range, or ``None`` when unsatisfiable.

    >>> parse_range("bytes=4-", 10), parse_range("bytes=2-5", 10), parse_range("bytes=-3", 10)
    ((4, 10), (2, 6), (7, 10))
    >>> parse_range("bytes=10-", 10) is None
    True
    """
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:
        return max(0, size - int(last)), size
    start = int(first)
    stop = min(size, int(last) + 1) if last else size
    return (start, stop) if start < size and start < stop else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: QuietServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        app = self.server.app
        path = urlsplit(self.path).path
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        with app.lock:
            app.requests_seen += 1
            route = app.routes.get(path)
            if route is not None:
                route.requests += 1
                route.ranges.append(range_header)
                route.if_ranges.append(if_range)
                nth = route.requests
        if route is None:
            self._send_short(404)
            return
        if route.status is not None:
            self._send_short(route.status, route)
            return
        if nth <= route.fail_first:
            self._send_short(500, route)
            return
        self._send_file(route, range_header)

    def _send_short(self, status: int, route: Route | None = None, **headers: str) -> None:
        body = f"{status}\n".encode()
        if route is not None:
            with self.server.app.lock:
                route.statuses.append(status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self, route: Route, range_header: str | None) -> None:
        size = route.size
        start, stop, status = 0, size, 200
        validators = route.validators()
        if (
            range_header is not None
            and self.headers.get("If-Range") is not None
            and not route.ignore_if_range
            and self.headers["If-Range"] not in validators.values()
        ):
            range_header = None  # the file changed: the whole new file, with 200
        if range_header is not None and not route.no_range:
            window = parse_range(range_header, size)
            if window is None:
                self._send_short(416, route, Content_Range=f"bytes */{size}")
                return
            start, stop = window
            start = min(max(0, start + route.range_shift), stop)
            status = 206
        with self.server.app.lock:
            route.statuses.append(status)
            nth_body = route.bodies_served
            route.bodies_served += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "none" if route.no_range else "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        for name, value in {**validators, **route.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        drop = route.drop_after if nth_body < route.drop_times else None
        stall = route.stall_after if nth_body == 0 else None
        trickle = route.trickle_seconds if nth_body < route.trickle_times else 0.0
        self._send_body(route, start, stop, drop, stall, trickle)

    def _send_body(
        self,
        route: Route,
        start: int,
        stop: int,
        drop: int | None,
        stall: int | None,
        trickle: float = 0.0,
    ) -> None:
        sent = 0
        limit = stop - start if drop is None else min(drop, stop - start)
        try:
            while sent < limit:
                step = 1 if trickle else min(_CHUNK, limit - sent)
                if trickle:
                    self.wfile.flush()
                    time.sleep(trickle)
                if stall is not None and sent < stall:
                    step = min(step, stall - sent)
                self.wfile.write(route.read(start + sent, start + sent + step))
                sent += step
                with self.server.app.lock:
                    route.bytes_sent += step
                if stall is not None and sent == stall:
                    self.wfile.flush()
                    time.sleep(route.stall_seconds)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if drop is not None and sent < stop - start:
            # End of stream before Content-Length: the client sees an incomplete body.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_WR)


class _App:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routes: dict[str, Route] = {}
        self.requests_seen = 0


class LoopbackServer(BackgroundServer):
    """Serve registered bodies on ``http://127.0.0.1:<port>``; a context manager."""

    def __init__(self) -> None:
        super().__init__(_App(), _Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes | Path, **faults: Any) -> str:
        """Serve ``body`` at ``path`` with the given faults; return its URL."""
        with self._app.lock:
            self._app.routes[path] = Route(body=body, **faults)
        return self.url(path)

    def replace(self, path: str, body: bytes | Path) -> None:
        """Serve ``body`` at ``path`` from now on (a new version: its ``ETag`` changes)."""
        with self._app.lock:
            self._app.routes[path].body = body

    def route(self, path: str) -> Route:
        """The route registered at ``path`` (its counters, and faults a test may change)."""
        return self._app.routes[path]

    @property
    def requests_seen(self) -> int:
        """Requests received on every path, registered or not."""
        return self._app.requests_seen
