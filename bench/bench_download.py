"""Benchmark of :func:`iad_pipeline.datasets.download.download` on loopback.

Usage: ``python bench/bench_download.py [--size-mb 256]``

Serves a synthetic archive (random bytes) from the loopback test server and prints one table:

1. ``download()`` throughput, and as a ratio of a raw socket GET of the same bytes (read into
   a reused buffer and discarded: the ceiling for this server and machine);
2. hash overhead: ``hashlib.sha256`` over the same bytes, over the download's wall time;
3. resume efficiency: bytes the server sent / archive size when the connection drops at 50 %,
   with Range support (target <= 1.05) and without it (a restart from zero: 1.5).

The server runs in this process, so it competes with the client for the GIL in both the raw
and the ``download()`` measurements. Each timing is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from iad_pipeline.datasets.download import download
from tests.support.http_server import LoopbackServer

MB = 1_000_000


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def raw_get(port: int, path: str) -> int:
    """GET ``path`` over a plain socket, reading until EOF; return the bytes read."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    buffer = memoryview(bytearray(1 << 20))
    total = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request.encode())
        while n := sock.recv_into(buffer):
            total += n
    return total


def fetch(url: str, dest: Path, digest: str) -> None:
    dest.unlink(missing_ok=True)
    download(url, dest, sha256=digest, progress=False, sleep=lambda _: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256, help="archive size in MB (1e6 B)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs; the best counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    size = args.size_mb * MB
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer() as server:
        dest = Path(tmp) / "archive.tar"
        url = server.add("/archive.tar", data)
        resume_url = server.add("/resume.tar", data, drop_after=size // 2)
        restart_url = server.add("/restart.tar", data, drop_after=size // 2, no_range=True)

        t_raw = best_of(args.repeat, lambda: raw_get(server.port, "/archive.tar"))
        t_dl = best_of(args.repeat, lambda: fetch(url, dest, digest))
        t_hash = best_of(args.repeat, lambda: hashlib.sha256(data).hexdigest())
        fetch(resume_url, dest, digest)
        fetch(restart_url, dest, digest)
        resume_ratio = server.route("/resume.tar").bytes_sent / size
        restart_ratio = server.route("/restart.tar").bytes_sent / size

    rows = [
        ("archive size", f"{size / MB:.0f} MB"),
        ("raw socket GET", f"{size / MB / t_raw:.0f} MB/s ({t_raw:.2f} s)"),
        ("download()", f"{size / MB / t_dl:.0f} MB/s ({t_dl:.2f} s)"),
        ("download() / raw socket", f"{t_raw / t_dl:.2f}"),
        ("sha256 alone", f"{size / MB / t_hash:.0f} MB/s ({t_hash:.2f} s)"),
        ("sha256 time / download time", f"{t_hash / t_dl:.2f} ({100 * t_hash / t_dl:.0f} %)"),
        ("drop at 50 %, Range: sent / size", f"{resume_ratio:.3f} (target <= 1.05)"),
        ("drop at 50 %, no Range: sent / size", f"{restart_ratio:.3f} (restart baseline 1.5)"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 28}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
