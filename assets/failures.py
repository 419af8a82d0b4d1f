"""How a user error in the core becomes a failed Dagster step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from iad_pipeline.errors import IadError


@contextmanager
def iad_errors_fail_the_step() -> Iterator[None]:
    """Turn an :class:`IadError` raised inside into a ``dg.Failure`` that is not retried.

    An ``IadError`` is a user error (a missing input, a bad recipe, a dataset that needs a
    manual download): its one-line message is the step's failure, without a traceback, and a
    retry policy would only repeat it. Any other exception is left to Dagster as a bug.
    """
    try:
        yield
    except IadError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
