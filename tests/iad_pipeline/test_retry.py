"""The one retry policy (iad_pipeline.retry): when it retries, how long it waits, when it stops."""

from __future__ import annotations

import random
import threading

import pytest

from iad_pipeline.retry import RetriesExhausted, RetryPolicy, Transient, retry_after_seconds


class Flaky:
    """Fails ``failures`` times with ``Transient(retry_after=...)``, then returns its count."""

    def __init__(self, failures: int, retry_after: float | None = None) -> None:
        self.failures, self.retry_after, self.calls = failures, retry_after, []

    def __call__(self, attempt: int) -> int:
        self.calls.append(attempt)
        if len(self.calls) <= self.failures:
            raise Transient(f"failure {len(self.calls)}", self.retry_after)
        return len(self.calls)


def test_full_jitter_doubles_from_the_base_up_to_the_cap(monkeypatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the window's top
    sleeps: list[float] = []
    flaky = Flaky(5)
    assert RetryPolicy(retries=5, backoff=10.0).call(flaky, sleep=sleeps.append) == 6
    assert sleeps == [10.0, 20.0, 40.0, 60.0, 60.0]  # 10 * 2**(n-1), capped at 60
    assert flaky.calls == [1, 2, 3, 4, 5, 6]


def test_retry_after_replaces_the_backoff_up_to_its_cap() -> None:
    sleeps: list[float] = []
    RetryPolicy(retries=2, max_retry_after=5.0).call(Flaky(2, 7.0), sleep=sleeps.append)
    assert sleeps == [5.0, 5.0]


def test_retries_run_out_with_the_last_failure() -> None:
    with pytest.raises(RetriesExhausted) as info:
        RetryPolicy(retries=2).call(Flaky(9), sleep=lambda s: None)
    assert (str(info.value.last), info.value.attempts) == ("failure 3", 3)
    assert info.value.refused_wait is None and not info.value.stopped


def test_a_wait_past_the_deadline_is_refused() -> None:
    sleeps: list[float] = []
    with pytest.raises(RetriesExhausted) as info:
        RetryPolicy(retries=4, deadline=30.0).call(Flaky(9, 100.0), sleep=sleeps.append)
    assert sleeps == [] and info.value.attempts == 1 and info.value.refused_wait == 100.0


def test_other_errors_are_not_retried() -> None:
    def broken(attempt: int) -> None:
        raise KeyError(attempt)

    with pytest.raises(KeyError):
        RetryPolicy(retries=3).call(broken, sleep=lambda s: pytest.fail("slept"))


def test_no_attempt_starts_once_stopped() -> None:
    stop = threading.Event()
    flaky = Flaky(9)
    with pytest.raises(RetriesExhausted) as info:
        RetryPolicy(retries=5).call(flaky, sleep=lambda s: stop.set(), stop=stop)
    assert flaky.calls == [1] and info.value.stopped


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 10.0),  # an HTTP date, now = 0
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "later"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers, seconds) -> None:
    assert retry_after_seconds(headers, now=0.0) == seconds
