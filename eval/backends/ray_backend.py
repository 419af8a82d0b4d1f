"""The transformers backend on a Ray cluster: a Ray Data pipeline over an actor pool.

:func:`eval.runner.evaluate` cuts the questions into batches (the questions of an image
together) and asks :meth:`RayBackend.answer_batches` for all of them at once. The batches
become a ``ray.data.Dataset`` (one row per batch, its prompts pickled); ``map_batches`` runs
them through a pool of ``num_workers`` actors (``concurrency``), each holding one
:class:`~eval.backends.transformers_backend.TransformersBackend` (CPU, or one GPU with
``use_gpu``), and streams the answers back as each batch finishes. The runner appends every
batch to the answer store as it arrives, so a killed evaluation resumes with the questions
not answered yet, as in-process.

The actors answer the same batches with the same code and greedy decoding, so the answers
and hence the scores are those of the in-process backend. The backend's ``name`` is the
inner backend's (``transformers``): Ray changes where the model runs, not what answers, so
a Ray run and an in-process run of one checkpoint share their run id and resume each other.

``address``: ``auto`` (the cluster ``ray start`` started on this machine), a cluster address
(``HOST:6379``, ``ray://HOST:10001`` for a remote head such as KubeRay's) or ``None`` (a local
cluster for this process). The cluster's workers must import this project (a local cluster
started from this environment, or an image with it installed).
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.backends import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, BackendError
from eval.prompting import PromptSpec

log = logging.getLogger(__name__)


class _Answerer:
    """One Ray Data actor: a transformers model answering whole runner batches."""

    def __init__(self, backend_kwargs: Mapping[str, Any]) -> None:
        from eval.backends.transformers_backend import TransformersBackend

        self.backend = TransformersBackend(**backend_kwargs)

    def __call__(self, batch):
        import pyarrow as pa

        indices, responses, seconds = [], [], []
        for index, blob in zip(
            batch.column("index").to_pylist(), batch.column("specs").to_pylist(), strict=True
        ):
            specs = pickle.loads(blob)
            start = time.perf_counter()
            answers = self.backend.answer(specs)
            seconds.append((time.perf_counter() - start) / max(len(specs), 1))
            indices.append(index)
            responses.append(json.dumps(answers))
        return pa.table({"index": indices, "responses": responses, "seconds": seconds})


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """One TCP connection to ``HOST:PORT`` or ``ray://HOST:PORT`` (``ray.init`` would retry
    an unreachable address for minutes); ``auto`` and ``None`` are checked by ``ray.init``."""
    if address is None or address == "auto":
        return
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        msg = f"ray address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT"
        raise BackendError(msg)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        msg = (
            f"ray address {address!r}: cannot join a Ray cluster there ({exc}); start one "
            "with `ray start --head` or pass its address (HOST:6379, ray://HOST:10001)"
        )
        raise BackendError(msg) from None


class RayBackend:
    """:class:`~eval.backends.transformers_backend.TransformersBackend` on Ray actors.

    Args:
        model_path: the model folder, reachable from every actor (a shared path).
        address: the Ray cluster (see the module docstring); ``None`` starts a local one.
        num_workers: actors, one model each (Ray Data's ``concurrency``).
        use_gpu: one GPU per actor.
        resources_per_worker: Ray resources per actor, e.g. ``{"CPU": 4, "GPU": 1}``
            (default one CPU, plus one GPU with ``use_gpu``).
        batch_size: prompts per forward pass inside an actor.
        **backend_kwargs: the other ``TransformersBackend`` arguments (``max_new_tokens``,
            ``mode``, ``dtype``, ``max_pixels``...).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        address: str | None = "auto",
        num_workers: int = 1,
        use_gpu: bool = False,
        resources_per_worker: Mapping[str, float] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **backend_kwargs: Any,
    ) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            msg = f"RayBackend: num_workers={num_workers!r}; expected an integer >= 1"
            raise BackendError(msg)
        mode = backend_kwargs.get("mode", "generate")
        self.model = str(model_path)
        self.name = "transformers" if mode == "generate" else f"transformers-{mode}"
        self.address = address
        self.num_workers = num_workers
        self.backend_kwargs = {
            "model_path": str(Path(model_path).absolute()),
            "batch_size": batch_size,
            **backend_kwargs,
        }
        resources = dict(resources_per_worker or {})
        self.num_cpus = float(resources.pop("CPU", 1))
        self.num_gpus = float(resources.pop("GPU", 1 if use_gpu else 0))
        self.resources = resources
        if use_gpu:
            self.backend_kwargs.setdefault("device", "cuda")
        self._joined = False  # this backend called ray.init: close() leaves the cluster
        self._connect()

    def __repr__(self) -> str:
        return f"RayBackend({self.model!r}, address={self.address!r}, workers={self.num_workers})"

    def _connect(self) -> None:
        try:
            import ray
        except ImportError:
            msg = "the ray backend needs Ray: pip install 'iad-pipeline[ray]'"
            raise BackendError(msg) from None

        if ray.is_initialized():
            return
        _check_reachable(self.address)
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError, TimeoutError
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = (
                f"ray address {self.address!r}: cannot join a Ray cluster there "
                f"({reason[:200]}); start one with `ray start --head` or pass its address "
                "(HOST:6379, ray://HOST:10001)"
            )
            raise BackendError(msg) from None
        self._joined = True

    def close(self) -> None:
        """Leave the cluster this backend joined (a connection made before it is kept)."""
        import ray

        if self._joined and ray.is_initialized():
            ray.shutdown()
        self._joined = False

    def answer_batches(
        self, spec_batches: Sequence[Sequence[PromptSpec]]
    ) -> Iterator[tuple[int, list[str | None], float]]:
        """``(batch index, responses, seconds per question)`` of every batch, as they finish."""
        if not spec_batches:
            return
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        items = [
            {"index": i, "specs": pickle.dumps(list(specs))} for i, specs in enumerate(spec_batches)
        ]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        answered = dataset.map_batches(
            _Answerer,
            fn_constructor_kwargs={"backend_kwargs": self.backend_kwargs},
            batch_size=1,
            batch_format="pyarrow",
            concurrency=self.num_workers,
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            resources=self.resources or None,
        )
        for row in answered.iter_rows():
            yield int(row["index"]), json.loads(row["responses"]), float(row["seconds"])

    def answer(
        self, prompts: Sequence[PromptSpec], max_new_tokens: int | None = None
    ) -> list[str | None]:
        """One response per prompt (the :class:`~eval.backends.Backend` protocol).

        Runs one pipeline for these prompts alone (its actors load the model first):
        :func:`~eval.runner.evaluate` calls :meth:`answer_batches` instead.
        """
        built = self.backend_kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if max_new_tokens is not None and max_new_tokens != built:
            msg = "RayBackend: set max_new_tokens when building it, not per call"
            raise BackendError(msg)
        size = self.backend_kwargs["batch_size"]
        batches = [list(prompts[s : s + size]) for s in range(0, len(prompts), size)]
        out: list[list[str | None]] = [[] for _ in batches]
        for index, responses, _ in self.answer_batches(batches):
            out[index] = responses
        return [r for batch in out for r in batch]
