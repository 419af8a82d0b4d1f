"""An HTTP transport whose reads obey a total deadline per call and a stop event.

httpx's timeouts bound each socket operation, not a request: a server that trickles a byte
every few seconds keeps a call alive for ever. :func:`deadline_http_client` builds an httpx
client (for ``openai.OpenAI(http_client=...)``) whose network streams read in slices of at
most :data:`SLICE` seconds and, between slices, check the deadline and the stop event that
the calling thread set with :func:`call_limits`. Past the deadline a read raises
``httpcore.ReadTimeout`` (the openai client reports it as ``APITimeoutError``); once the stop
event is set (Ctrl-C) it raises ``httpcore.ReadError`` within a slice.

A socket read that timed out consumed nothing, so slicing does not change what is read.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

SLICE = 0.25
"""Longest blocking read, in seconds: how soon a deadline or a stop is noticed."""
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=5.0)


class _Call(threading.local):
    deadline: float | None = None
    stop: threading.Event | None = None


_CALL = _Call()


@contextlib.contextmanager
def call_limits(deadline: float | None, stop: threading.Event | None) -> Iterator[None]:
    """Reads in this thread give up at ``deadline`` (``time.monotonic()``) or once ``stop``."""
    _CALL.deadline, _CALL.stop = deadline, stop
    try:
        yield
    finally:
        _CALL.deadline, _CALL.stop = None, None


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def _slices(self, timeout: float | None, operation: Any, *args: Any) -> Any:
        started = time.monotonic()
        while True:
            now = time.monotonic()
            if _CALL.stop is not None and _CALL.stop.is_set():
                raise httpcore.ReadError("interrupted")
            left = [SLICE]
            if timeout is not None:
                left.append(timeout - (now - started))
            if _CALL.deadline is not None:
                left.append(_CALL.deadline - now)
            step = min(left)
            if step <= 0:
                raise httpcore.ReadTimeout("the call ran past its deadline")
            try:
                return operation(*args, step)
            except httpcore.ReadTimeout:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._slices(timeout, self._inner.read, max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kw: Any):
        return _Stream(self._inner.connect_tcp(host, port, timeout, **kw))

    def connect_unix_socket(self, path: str, timeout: float | None = None, **kw: Any):
        return _Stream(self._inner.connect_unix_socket(path, timeout, **kw))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_http_client(timeout: float) -> httpx.Client:
    """An httpx client for the openai client, with deadline-aware network streams.

    Raises:
        RuntimeError: httpx no longer exposes its connection pool's backend (a version this
            code does not know); the caller then falls back to plain timeouts.
    """
    transport = httpx.HTTPTransport(limits=LIMITS)
    pool = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        msg = f"httpx {httpx.__version__}: no connection pool backend to wrap"
        raise RuntimeError(msg)
    pool._network_backend = _Backend(pool._network_backend)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=True)
