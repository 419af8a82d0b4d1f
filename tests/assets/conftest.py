"""Asset tests run Dagster instances one after another in one process."""

import gc

import pytest


@pytest.fixture(autouse=True)
def _dispose_leaked_instances() -> None:
    """Collect before each test: an unreferenced DagsterInstance of an earlier test that the
    garbage collector disposes of in the middle of a later test resets Dagster's current
    state storage (a context variable) to a storage whose instance is gone, and the next
    ``materialize`` then fails with "Attempted to resolve undefined DagsterInstance weakref"
    (seen once in a full run, never alone)."""
    gc.collect()
