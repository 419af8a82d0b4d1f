"""Evaluate a backend on a question table: resumable, batched by image, one shard per batch.

:func:`evaluate` asks every question of the table that the run has not answered yet:

1. the run id comes from :class:`RunInfo` (model, checkpoint and its content fingerprint,
   protocol key, backend), so re-running the same evaluation resumes it; questions already
   in the store are skipped; the protocol's record is written beside the run's ``run.json``
   (``protocol.json``); the run's answering lock is held throughout, so the same
   evaluation started twice at once asks each question once (the second waits);
2. the rest are ordered so that the questions of one image follow each other (images in
   order of first appearance) and cut into batches of ``batch_size``: a batch holds whole
   images except where a boundary falls inside one (each boundary splits at most one image),
   so every batch is full and the backend preprocesses each image once per batch;
3. each batch's prompts come from :func:`~eval.prompting.build_prompt`; the responses are
   parsed by the one answer parser (:func:`eval.records.parse_response`, built on
   :mod:`iad_pipeline.answers`) and appended to the store as one shard, so a killed run
   loses at most the batch in flight. A backend with ``answer_batches`` (the Ray backend)
   gets every batch at once and returns each as it finishes (:func:`answer_batches`); each
   is stored on arrival, so a killed run loses only the batches in flight.

``latency_s`` is the batch's wall time divided by its number of questions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from eval.backends import DEFAULT_BATCH_SIZE, Backend, check_answers
from eval.prompting import PromptSources, PromptSpec
from eval.protocols import Protocol
from eval.records import ANSWERS_SCHEMA, parse_response
from eval.store import AnswerStore
from iad_pipeline.errors import IadError
from iad_pipeline.fsutil import write_json

log = logging.getLogger(__name__)

# Beside a run's run.json: every setting of its protocol (Protocol.record).
PROTOCOL_JSON = "protocol.json"


class EvaluationError(IadError, ValueError):
    """Questions or settings an evaluation cannot run with."""


@dataclass(frozen=True)
class RunInfo:
    """What identifies a run: the model, its checkpoint, the backend's name and the protocol.

    ``checkpoint`` names the weights beyond ``model`` (a step folder, an adapter); ``""``
    for the published weights. ``checkpoint_sha`` is the checkpoint's content fingerprint
    (:func:`iad_pipeline.fingerprint.checkpoint_fingerprint`): a checkpoint re-trained under
    the same name is another run. ``model_revision`` (a hub commit or a content hash) is
    recorded with the protocol (:meth:`~eval.protocols.Protocol.record`).
    """

    model: str
    checkpoint: str
    backend: str
    protocol: Protocol
    checkpoint_sha: str = ""
    model_revision: str | None = None

    @property
    def protocol_name(self) -> str:
        """The protocol as the run id sees it: its name and the hash of its whole record, so
        a changed prompt text or pixel bound is a new run, never resumed from the old one."""
        return self.protocol.key

    def protocol_record(self) -> dict[str, Any]:
        """The protocol record stored with the run (``protocol.json``, the ``runs`` row)."""
        return self.protocol.record(self.model_revision) | {"protocol_key": self.protocol.key}


def image_batches(image_paths: Sequence[str], batch_size: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size``, the rows of one image next to each other.

    Images come in order of first appearance, rows of an image in their order.

    >>> image_batches(["a", "b", "a", "c", "b", "a"], 4)
    [[0, 2, 5, 1], [4, 3]]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size={batch_size!r}; expected an integer >= 1"
        raise EvaluationError(msg)
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(image_paths):
        groups.setdefault(path, []).append(i)
    order = [i for rows in groups.values() for i in rows]
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def answer_record(run_id: str, spec: PromptSpec, response: str, rule: str) -> dict[str, Any]:
    """The answer record of one response (the columns of :data:`ANSWERS_SCHEMA`).

    >>> from eval.prompting import build_prompt
    >>> from eval.protocols import Protocol
    >>> spec = build_prompt({"question_id": "q", "image_path": "VisA/candle/test/bad/1.png",
    ...     "question": "Defect? \\nA. Yes\\nB. No\\n", "options": ["Yes", "No"], "answer": "A",
    ...     "mmad_type": "Anomaly Detection"}, Protocol(shots=0))
    >>> r = answer_record("run", spec, "B", "mmad")
    >>> r["dataset"], r["category"], r["gpt_answer"], r["correct_answer"]
    ('VisA', 'candle', 'B', 'A')
    >>> answer_record("run", spec, "no idea", "think")["gpt_answer"]
    'no idea'
    """
    parsed_mmad, parsed_think = parse_response(response, spec.options)
    parsed = parsed_mmad if rule == "mmad" else parsed_think
    parts = spec.image.split("/")
    return {
        "run_id": run_id,
        "question_id": spec.question_id,
        "image": spec.image,
        "dataset": parts[0] if len(parts) > 1 else None,
        "category": parts[1] if len(parts) > 2 else None,
        "question": spec.question,
        "question_type": spec.question_type,
        "correct_answer": spec.answer,
        "response": response,
        "gpt_answer": parsed if parsed is not None else response,
        "parsed_mmad": parsed_mmad,
        "parsed_think": parsed_think,
        "latency_s": None,
    }


def answer_batches(
    backend: Backend, spec_batches: Sequence[Sequence[PromptSpec]]
) -> Iterator[tuple[int, list[str | None], float]]:
    """``(batch index, responses, seconds per question)`` of each batch, as they are answered.

    A backend with its own ``answer_batches`` (the Ray backend: a pipeline over every batch,
    several at once) yields in the order it finishes them; any other answers one batch at a
    time, in order.
    """
    own = getattr(backend, "answer_batches", None)
    if callable(own):
        yield from own(spec_batches)
        return
    for index, specs in enumerate(spec_batches):
        start = time.perf_counter()
        responses = backend.answer(specs)
        yield index, responses, (time.perf_counter() - start) / len(specs)


def evaluate(
    questions: pl.DataFrame,
    backend: Backend,
    store: AnswerStore,
    *,
    run: RunInfo,
    sources: PromptSources,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    lock_timeout_s: float | None = None,
) -> pl.DataFrame:
    """Answer the questions the run has not answered yet and return the run's records.

    Args:
        questions: a question table (:data:`~iad_pipeline.questions.schema.QUESTIONS_SCHEMA`,
            e.g. from ``read_mmad_json``); a repeated question id is asked once.
        backend: answers prompts (:class:`~eval.backends.Backend`).
        store: where answers are appended and found on resume.
        run: model, checkpoint, backend name and protocol: the run id.
        sources: the templates, knowledge and image root the prompts are built from
            (:class:`~eval.prompting.PromptSources`).
        batch_size: questions per backend call and per stored shard.
        progress: show a progress bar.
        lock_timeout_s: how long to wait while another process answers the same run
            (``None``: until it finishes or dies).

    Returns:
        The records (:data:`~eval.records.ANSWERS_SCHEMA`) of the table's questions, earlier
        runs' included, in the store's order. Questions the backend gave no answer
        (``None``) are missing; the next call asks them again.

    Raises:
        EvaluationError: a table without ``question_id`` or ``image_path``, a bad batch size,
            or ``run.backend`` that is not ``backend.name``.
        StoreLockedError: another process held the run past ``lock_timeout_s``.
        ProtocolError: a question the protocol cannot build (missing templates, knowledge).
    """
    missing = [c for c in ("question_id", "image_path") if c not in questions.columns]
    if missing:
        msg = (
            f"questions lack the columns {missing}; expected a question table (QUESTIONS_SCHEMA),"
            " e.g. from read_mmad_json"
        )
        raise EvaluationError(msg)
    if run.backend != backend.name:
        msg = (
            f"run.backend is {run.backend!r} but the backend is {backend.name!r}; the run id "
            "must name the backend that answers, or answers of two backends (generated and "
            "letter-scored, say) would mix in one run: pass RunInfo(backend=backend.name)"
        )
        raise EvaluationError(msg)
    rid = store.open_run(
        run.model, run.checkpoint, run.protocol_name, run.backend, run.checkpoint_sha
    )
    write_json(store.run_dir(rid) / PROTOCOL_JSON, run.protocol_record())
    questions = questions.unique("question_id", keep="first", maintain_order=True)
    with store.lock(rid, lock_timeout_s):
        _ask(questions, backend, store, rid, run, sources, batch_size, progress)
    answers = store.read(rid)
    return answers.filter(pl.col("question_id").is_in(questions["question_id"].to_list())).select(
        list(ANSWERS_SCHEMA)
    )


def _ask(
    questions: pl.DataFrame,
    backend: Backend,
    store: AnswerStore,
    rid: str,
    run: RunInfo,
    sources: PromptSources,
    batch_size: int,
    progress: bool,
) -> None:
    """Ask the questions of ``questions`` the run has not answered (under the run's lock)."""
    done = store.answered(rid)
    todo = questions.filter(~pl.col("question_id").is_in(list(done)))
    rows = todo.to_dicts()
    batches = image_batches([str(r["image_path"]) for r in rows], batch_size)
    log.info(
        "run %s (%s, %s): %d questions, %d answered before, %d to ask in %d batches",
        rid,
        run.model,
        run.protocol_name,
        questions.height,
        questions.height - todo.height,
        todo.height,
        len(batches),
    )
    unanswered = 0
    with tqdm(
        total=questions.height,
        initial=questions.height - todo.height,
        desc=f"eval {run.protocol.name}",
        unit="q",
        disable=not progress,
    ) as bar:
        spec_batches = [[sources.prompt(rows[i], run.protocol) for i in batch] for batch in batches]
        for index, responses, seconds in answer_batches(backend, spec_batches):
            specs = spec_batches[index]
            check_answers(backend.name, specs, responses)
            records = [
                answer_record(rid, spec, response, run.protocol.answer_rule)
                | {"latency_s": seconds}
                for spec, response in zip(specs, responses, strict=True)
                if response is not None
            ]
            unanswered += len(specs) - len(records)
            store.append(rid, records)
            bar.update(len(specs))
    if unanswered:
        log.warning(
            "run %s: %d questions got no answer; call evaluate again to ask them", rid, unanswered
        )
