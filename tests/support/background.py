"""A real HTTP server on 127.0.0.1 (port chosen by the OS) run in a daemon thread.

The loopback test servers (downloads, OpenAI-compatible chat) share this start/stop logic;
each brings its own request handler and an ``app`` object the handler reads state from.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

logger = logging.getLogger(__name__)


class QuietServer(ThreadingHTTPServer):
    """A threading server whose handler errors (dropped clients) go to debug logs."""

    daemon_threads = True
    app: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("loopback server: error serving %s", client_address, exc_info=True)


class BackgroundServer:
    """Runs ``handler`` with ``app`` on a loopback port; a context manager."""

    def __init__(self, app: Any, handler: type[BaseHTTPRequestHandler]) -> None:
        self._app = app
        self._handler = handler
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        server = QuietServer(("127.0.0.1", 0), self._handler)
        server.app = self._app
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            msg = f"{type(self).__name__} is not running: call start() or use a with block."
            raise RuntimeError(msg)
        return self._server.server_address[1]
