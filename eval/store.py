"""Resumable answer storage: append-only JSON Lines shards, each written atomically.

Layout under the store's root::

    <run_id>/run.json            model, checkpoint (and its content fingerprint), protocol and
                                 backend (written once)
    <run_id>/.lock               held (flock) by the process answering the run's questions
    <run_id>/part-00000.jsonl    one answer record per line (columns of ANSWERS_SCHEMA)
    <run_id>/part-00001.jsonl    ...

A shard is written to a hidden temporary name beside its final one, flushed, fsync'ed and
then linked into place under a name no other shard has (a second writer never overwrites a
shard, it takes the next number). A run killed mid-write leaves at most a hidden ``*.tmp``
file, which readers ignore, so the shards that exist are always whole. An evaluation appends
one shard per finished batch; a restart reads :meth:`AnswerStore.answered` and asks only the
rest. MMAD's own script rewrites its whole answer file after every image, non-atomically.

The run id is a hash of what makes answers comparable (model, checkpoint name, the
checkpoint's content fingerprint, protocol name and backend), so the same evaluation started
twice resumes into the same folder, and a checkpoint re-trained under the same name is a new
run that asks every question again.

:meth:`AnswerStore.lock` serialises answering: the same evaluation launched twice at once
does not answer every question twice; the second waits, then finds them answered. The lock is
an ``fcntl.flock`` on ``<run_id>/.lock``, which the kernel releases when its holder exits, so
a killed evaluation never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from eval.records import ANSWERS_SCHEMA, records_frame
from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import temp_sibling, write_json

log = logging.getLogger(__name__)

RUN_FIELDS = ("model", "checkpoint", "protocol", "backend")
# Optional fields: part of the id only when set, so runs of published weights keep their ids.
OPTIONAL_RUN_FIELDS = ("checkpoint_sha",)
LOCK = ".lock"
RUN_JSON = "run.json"
_SHARD = re.compile(r"^part-(\d+)\.jsonl$")


class StoreError(IadError, ValueError):
    """An answer store that holds something other than what it wrote."""


class StoreLockedError(StoreError):
    """Another process answered the run's questions for longer than the lock timeout."""


def _fields(
    model: str, checkpoint: str, protocol_name: str, backend: str, checkpoint_sha: str
) -> dict[str, str]:
    fields = dict(zip(RUN_FIELDS, (model, checkpoint, protocol_name, backend), strict=True))
    if checkpoint_sha:
        fields["checkpoint_sha"] = checkpoint_sha
    return fields


def run_id(
    model: str, checkpoint: str, protocol_name: str, backend: str, checkpoint_sha: str = ""
) -> str:
    """A stable id (16 hex digits of sha1) of one evaluation run.

    ``checkpoint_sha`` is the checkpoint's content fingerprint
    (:func:`iad_pipeline.fingerprint.checkpoint_fingerprint`); other weights, another id.

    >>> run_id("Qwen2.5-VL-7B", "", "1shot-random", "transformers")
    '560096147aa9c5ce'
    >>> run_id("Qwen2.5-VL-7B", "", "0shot", "transformers") != run_id(
    ...     "Qwen2.5-VL-7B", "", "1shot-random", "transformers")
    True
    >>> run_id("m", "demo-4", "0shot", "t", "aa" * 32) != run_id("m", "demo-4", "0shot", "t",
    ...     "bb" * 32)
    True
    """
    fields = _fields(model, checkpoint, protocol_name, backend, checkpoint_sha)
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


class AnswerStore:
    """Answer records of evaluation runs under ``root``, one folder per run id.

    Example:
        >>> import tempfile
        >>> store = AnswerStore(tempfile.mkdtemp())
        >>> rid = store.open_run("m", "", "0shot", "transformers")
        >>> store.append(rid, [{"question_id": "q1", "image": "VisA/candle/test/bad/1.png",
        ...     "question_type": "Anomaly Detection", "gpt_answer": "A"}]).name
        'part-00000.jsonl'
        >>> store.answered(rid), store.read(rid)["category"].to_list()
        ({'q1'}, ['candle'])
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"AnswerStore({str(self.root)!r})"

    def run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            msg = f"run id {run_id!r}: expected a plain folder name such as run_id() returns"
            raise StoreError(msg)
        return self.root / run_id

    def open_run(
        self,
        model: str,
        checkpoint: str,
        protocol_name: str,
        backend: str,
        checkpoint_sha: str = "",
    ) -> str:
        """The run id of these fields; its ``run.json`` is written on the first call only.

        Raises:
            StoreError: the folder's ``run.json`` names other fields (a hash collision or a
                hand-edited file).
        """
        rid = run_id(model, checkpoint, protocol_name, backend, checkpoint_sha)
        fields = _fields(model, checkpoint, protocol_name, backend, checkpoint_sha)
        path = self.run_dir(rid) / RUN_JSON
        if path.is_file():
            found = self.run_info(rid)
            described = {k: found[k] for k in (*RUN_FIELDS, *OPTIONAL_RUN_FIELDS) if k in found}
            if described != fields:
                msg = (
                    f"{path}: describes {found}, expected {fields} for run id {rid}; move the "
                    "folder away or restore its run.json"
                )
                raise StoreError(msg)
        else:
            write_json(path, {"run_id": rid, **fields})
        return rid

    @contextlib.contextmanager
    def lock(self, run_id: str, timeout_s: float | None = None) -> Iterator[Path]:
        """Hold the run's answering lock (``<run_id>/.lock``, an exclusive ``flock``).

        Waits while another process holds it (logging once), up to ``timeout_s`` seconds
        (``None``: as long as it takes; the kernel releases the lock of a process that dies).

        Raises:
            StoreLockedError: still held after ``timeout_s``.
        """
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        msg = (
                            f"{path}: another process has been answering run {run_id} for more "
                            f"than {timeout_s:g} s; wait for it to finish"
                        )
                        raise StoreLockedError(msg) from None
                    if not waited:
                        log.warning("%s: another process is answering this run; waiting", path)
                        waited = True
                    time.sleep(0.1)
            yield path
        finally:
            os.close(fd)  # releases the lock

    def run_info(self, run_id: str) -> dict[str, Any]:
        """The fields of ``run.json`` (empty when the run was never opened)."""
        path = self.run_dir(run_id) / RUN_JSON
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"{path}: unreadable ({exc}); expected the JSON written by open_run"
            raise StoreError(msg) from exc

    def shards(self, run_id: str) -> list[Path]:
        """The run's finished shards in write order; temporary files are not shards."""
        folder = self.run_dir(run_id)
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _SHARD.match(p.name))]
        return [p for _, p in sorted(found)]

    def _rows(self, run_id: str, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for shard in self.shards(run_id):
            for n, line in enumerate(shard.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as exc:
                    msg = (
                        f"{shard}: line {n} is not JSON ({exc}); shards are written whole, so "
                        "the file was changed by hand; delete it to answer its questions again"
                    )
                    raise StoreError(msg) from exc
                if not isinstance(row, dict):
                    msg = f"{shard}: line {n} is {type(row).__name__}; expected a JSON object"
                    raise StoreError(msg)
                rows.append(row if columns is None else {c: row.get(c) for c in columns})
        return rows

    def answered(self, run_id: str) -> set[str]:
        """Question ids that already have an answer in the run."""
        return {r["question_id"] for r in self._rows(run_id, ["question_id"]) if r["question_id"]}

    def read(self, run_id: str) -> pl.DataFrame:
        """The run's answer records (:data:`~eval.records.ANSWERS_SCHEMA`), in write order.

        A question answered twice (two writers, or a shard copied in by hand) keeps its first
        record.
        """
        rows = self._rows(run_id)
        if not rows:
            return pl.DataFrame(schema=ANSWERS_SCHEMA)
        frame = records_frame(rows, source=str(self.run_dir(run_id)))
        return frame.unique("question_id", keep="first", maintain_order=True)

    def append(
        self, run_id: str, records: Sequence[Mapping[str, Any]] | pl.DataFrame
    ) -> Path | None:
        """Write ``records`` as the run's next shard, atomically; ``None`` when there are none.

        Only the columns of :data:`~eval.records.ANSWERS_SCHEMA` are kept; ``run_id`` is set.
        """
        rows = records.to_dicts() if isinstance(records, pl.DataFrame) else list(records)
        if not rows:
            return None
        lines = []
        for row in rows:
            record = {c: row.get(c) for c in ANSWERS_SCHEMA} | {"run_id": run_id}
            lines.append(json.dumps(record, ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        existing = self.shards(run_id)
        n = int(_SHARD.match(existing[-1].name).group(1)) + 1 if existing else 0
        tmp = temp_sibling(folder / f"part-{n:05d}.jsonl")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            while True:
                final = folder / f"part-{n:05d}.jsonl"
                try:
                    os.link(tmp, final)  # fails instead of replacing a shard another writer made
                    break
                except FileExistsError:
                    n += 1
        finally:
            tmp.unlink(missing_ok=True)
        log.debug("%s: %d answers", final, len(rows))
        return final
