"""What one chat run may spend and what it spent, counted across its worker threads.

:class:`Budget` holds the limits (``max_requests``: requests started, not retries;
``max_tokens``: prompt plus completion tokens) and says whether a new request may start;
:class:`Tally` sums what every attempt cost, for the run's report.

Once either limit is reached no new request starts; requests in flight finish (so
``max_tokens`` can be overshot by at most ``concurrency`` answers); the rest become
``skipped_budget`` rows. Cached answers are free and are still served after the stop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Budget:
    """Thread-safe counters of one run against the limits."""

    max_requests: int | None
    max_tokens: int | None
    started: int = 0
    tokens: int = 0
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def try_start(self) -> bool:
        with self.lock:
            over_requests = self.max_requests is not None and self.started >= self.max_requests
            over_tokens = self.max_tokens is not None and self.tokens >= self.max_tokens
            if over_requests or over_tokens:
                self.stopped = True
                return False
            self.started += 1
            return True

    def release(self) -> None:
        """Give back a start that sent nothing."""
        with self.lock:
            self.started -= 1

    def spend(self, tokens: int) -> None:
        with self.lock:
            self.tokens += tokens


@dataclass
class Tally:
    """What the run spent (every attempt's usage counts, including empty answers)."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *, requests: int = 0, retries: int = 0, prompt: int = 0, completion: int = 0):
        with self.lock:
            self.requests += requests
            self.retries += retries
            self.prompt_tokens += prompt
            self.completion_tokens += completion
