"""Benchmark of :class:`iad_pipeline.knowledge.client.ChatClient` against the loopback server.

Usage: ``python bench/bench_knowledge.py [--requests 200] [--latency 0.1] [--concurrency 8]``

Serves OpenAI-shaped answers from the loopback chat server (``tests/support/openai_server.py``)
with a fixed latency per request, and prints one table, from one run:

1. wall time of ``--requests`` distinct requests sent one at a time (concurrency 1, cold
   cache) and with ``--concurrency`` workers (cold cache), and their ratio (target <= 0.2;
   the ideal is ``1 / concurrency`` plus the client's own overhead);
2. a re-run of the same requests with the warm cache: requests made (target 0) and wall time.

Each request carries ``--images`` PNG images of ``--side`` pixels (encoded and downscaled to
512 px per request, as in production; 0 images measures the HTTP path alone). The server
runs in this process, so it competes with the client for the GIL.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from iad_pipeline.knowledge.client import ChatClient, ChatRequest, RunReport
from iad_pipeline.settings import ChatSettings
from tests.support.openai_server import OpenAIServer

MODEL = "bench-model"


def make_requests(folder: Path, n: int, images: int, side: int) -> list[ChatRequest]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(images):
        path = folder / f"image_{i}.png"
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return [
        ChatRequest(("bench", str(i)), f"Describe defect number {i} of the object.", tuple(paths))
        for i in range(n)
    ]


def timed(client: ChatClient, requests: list[ChatRequest]) -> tuple[float, RunReport]:
    start = time.perf_counter()
    report = client.run(requests)
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--images", type=int, default=1, help="images per request")
    parser.add_argument("--side", type=int, default=512, help="image side in pixels")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(MODEL, latency=args.latency) as srv:
        folder = Path(tmp)
        requests = make_requests(folder, args.requests, args.images, args.side)

        def client(concurrency: int, cache: str) -> ChatClient:
            return ChatClient(
                ChatSettings(base_url=srv.base_url, model=MODEL, concurrency=concurrency),
                folder / cache,
            )

        seq_s, seq = timed(client(1, "sequential"), requests)
        par_s, par = timed(client(args.concurrency, "parallel"), requests)
        before = srv.requests_seen
        warm_s, warm = timed(client(args.concurrency, "parallel"), requests)
        warm_made = srv.requests_seen - before
        failures = seq.failures + par.failures + warm.failures
        peak = srv.max_in_flight

    rows = [
        ("requests", f"{args.requests}", f"{args.images} x {args.side}px image each"),
        ("server latency", f"{args.latency * 1000:.0f} ms", "per request"),
        ("sequential (concurrency 1)", f"{seq_s:.2f} s", f"{seq.requests_made} made"),
        (
            f"concurrency {args.concurrency}",
            f"{par_s:.2f} s",
            f"{par.requests_made} made, peak in flight {peak}",
        ),
        ("ratio parallel / sequential", f"{par_s / seq_s:.3f}", "target <= 0.2"),
        ("warm-cache re-run", f"{warm_s:.3f} s", f"{warm.cache_hits} cache hits"),
        ("warm-cache requests made", f"{warm_made}", "target 0"),
        ("failures", f"{failures}", "expected 0"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
