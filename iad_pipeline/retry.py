"""One retry policy for every call to a server: dataset downloads and chat requests.

:class:`RetryPolicy` holds the numbers and :meth:`RetryPolicy.call` runs a function under
them, on `tenacity <https://tenacity.readthedocs.io>`_. One set of semantics:

- an attempt that raises :class:`Transient` is retried; any other exception goes up at once;
- retry ``n`` (``n = 1, 2, ...``) waits ``uniform(0, min(max_backoff, backoff * 2**(n-1)))``
  seconds (exponential backoff with full jitter, tenacity's ``wait_random_exponential``), so
  that clients that failed together do not come back together;
- a failure that carries the server's ``Retry-After`` waits that long instead, up to
  ``max_retry_after`` seconds;
- at most ``retries`` retries; with a ``deadline``, a wait that would end past ``deadline``
  seconds after the first attempt started is not taken (the call gives up instead);
- the wait goes through ``sleep`` (a stop event's ``wait`` ends it at once on Ctrl-C; tests
  pass a recorder), and once ``stop`` is set no attempt starts.

Giving up raises :class:`RetriesExhausted` with the last failure, the attempts made and why.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import tenacity

T = TypeVar("T")


class Transient(Exception):
    """A failure that a later attempt may not meet; ``retry_after``: seconds the server asked."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetriesExhausted(Exception):
    """No more attempts: ``last`` is the last failure; ``refused_wait`` the wait that would
    have passed the deadline (``None`` when retries ran out or the call was stopped)."""

    def __init__(
        self, last: Transient, attempts: int, refused_wait: float | None, stopped: bool
    ) -> None:
        super().__init__(str(last))
        self.last = last
        self.attempts = attempts
        self.refused_wait = refused_wait
        self.stopped = stopped


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call to a server is retried (see the module docstring).

    >>> RetryPolicy(retries=-1)
    Traceback (most recent call last):
    ...
    ValueError: RetryPolicy: retries=-1; expected an integer >= 0
    """

    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            msg = f"RetryPolicy: retries={self.retries!r}; expected an integer >= 0"
            raise ValueError(msg)
        for name in ("backoff", "max_backoff", "max_retry_after"):
            if not getattr(self, name) >= 0:
                msg = f"RetryPolicy: {name}={getattr(self, name)!r}; expected seconds >= 0"
                raise ValueError(msg)
        if self.deadline is not None and not self.deadline > 0:
            msg = f"RetryPolicy: deadline={self.deadline!r}; expected seconds > 0 or None"
            raise ValueError(msg)

    def wait(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next attempt: the server's ``Retry-After``, else full jitter."""
        failure = state.outcome.exception() if state.outcome is not None else None
        asked = getattr(failure, "retry_after", None)
        if asked is not None:
            return min(float(asked), self.max_retry_after)
        jitter = tenacity.wait_random_exponential(multiplier=self.backoff, max=self.max_backoff)
        return jitter(state)

    def call(
        self,
        fn: Callable[[int], T],
        *,
        sleep: Callable[[float], object] = time.sleep,
        stop: threading.Event | None = None,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> T:
        """``fn(attempt)`` (``attempt`` counts from 1) until it returns, under this policy.

        Raises:
            RetriesExhausted: Every allowed attempt raised :class:`Transient`.
        """
        halt = tenacity.stop_after_attempt(self.retries + 1)
        if self.deadline is not None:
            halt = halt | tenacity.stop_before_delay(self.deadline)
        if stop is not None:
            halt = halt | (lambda _state: stop.is_set())
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            stop=halt,
            wait=self.wait,
            sleep=sleep,
            before_sleep=before_sleep,
            retry_error_callback=self._give_up(stop),
        )
        attempts = itertools.count(1)

        def attempt() -> T:
            number = next(attempts)
            if stop is not None and stop.is_set():  # woken from a wait by the stop
                raise Transient("interrupted")
            return fn(number)

        return retrying(attempt)

    def _give_up(self, stop: threading.Event | None) -> Callable[[tenacity.RetryCallState], None]:
        def give_up(state: tenacity.RetryCallState) -> None:
            last = state.outcome.exception() if state.outcome is not None else None
            if not isinstance(last, Transient):  # tenacity retries nothing else
                msg = f"retry: gave up on {last!r}, which is not a Transient failure"
                raise TypeError(msg)
            stopped = stop is not None and stop.is_set()
            out_of_time = state.attempt_number <= self.retries and not stopped
            refused = state.upcoming_sleep if out_of_time else None
            raise RetriesExhausted(last, state.attempt_number, refused, stopped) from last

        return give_up


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``.

    >>> retry_after_seconds({"retry-after": "7"}), retry_after_seconds({"retry-after-ms": "250"})
    (7.0, 0.25)
    >>> retry_after_seconds({}) is None, retry_after_seconds({"retry-after": "soon"}) is None
    (True, True)
    """
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:
                moment = parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                continue
            seconds = moment - (time.time() if now is None else now)
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None
