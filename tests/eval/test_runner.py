"""The runner: resume after a kill, one answer per question, batches grouped by image."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from eval.backends import Backend, BackendError
from eval.backends.transformers_backend import TransformersBackend
from eval.prompting import PromptSources
from eval.protocols import Protocol
from eval.records import ANSWERS_SCHEMA
from eval.runner import EvaluationError, RunInfo, answer_record, evaluate, image_batches
from eval.store import AnswerStore

RUN = RunInfo(model="scripted-model", checkpoint="", backend="scripted", protocol=Protocol())


def run_eval(questions, backend, store, mini_mmad, templates, **kwargs):
    kwargs.setdefault("run", RUN)
    return evaluate(
        questions,
        backend,
        store,
        sources=PromptSources(templates, image_root=mini_mmad),
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("images", "size", "batches"),
    [
        ([], 8, []),
        (["a"], 8, [[0]]),
        (["a", "b", "a", "c", "b", "a"], 4, [[0, 2, 5, 1], [4, 3]]),  # a a a | b, b | c
        (["a", "b", "a", "b"], 1, [[0], [2], [1], [3]]),
        (["x"] * 5, 2, [[0, 1], [2, 3], [4]]),  # one image larger than a batch
    ],
)
def test_image_batches(images, size, batches):
    assert image_batches(images, size) == batches


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_image_batches_rejects_bad_sizes(size):
    with pytest.raises(EvaluationError):
        image_batches(["a"], size)


def test_scripted_backend_is_a_backend(scripted):
    assert isinstance(scripted(), Backend)


def test_every_question_is_answered_once_with_the_schema(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    backend = scripted()
    store = AnswerStore(tmp_path)
    answers = run_eval(mmad_questions, backend, store, mini_mmad, templates)
    assert Counter(backend.asked) == Counter(mmad_questions["question_id"].to_list())
    assert answers.schema == pl.Schema(ANSWERS_SCHEMA)
    assert answers.height == mmad_questions.height == 180
    assert answers["question_id"].n_unique() == answers.height
    first = answers.row(0, named=True)
    assert first["image"] == "DS-MVTec/bottle/image/broken_large/000.png"
    assert (first["dataset"], first["category"]) == ("DS-MVTec", "bottle")
    assert first["response"] == "B" and first["gpt_answer"] == "B"
    assert set(answers["dataset"]) == {"DS-MVTec", "GoodsAD", "MVTec-LOCO", "VisA"}
    # Raw MMAD types, not the merged columns.
    assert {"Object Structure", "Object Details"} <= set(answers["question_type"])
    assert (answers["latency_s"] >= 0).all()
    # Each stored shard is one batch.
    assert len(store.shards(store.open_run(RUN.model, "", RUN.protocol_name, RUN.backend))) == (
        len(backend.batches)
    )


def test_batches_group_the_questions_of_an_image(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    backend = scripted()
    shuffled = mmad_questions.sample(fraction=1.0, shuffle=True, seed=1)
    run_eval(shuffled, backend, AnswerStore(tmp_path), mini_mmad, templates, batch_size=8)
    batches = [[p.image for p in batch] for batch in backend.batches]
    assert all(len(b) == 8 for b in batches[:-1])  # every batch but the last is full
    pairs = {(i, image) for i, batch in enumerate(batches) for image in batch}
    n_images = mmad_questions["image_path"].n_unique()
    # Each batch boundary splits at most one image: pairs <= images + boundaries.
    assert len(pairs) <= n_images + len(batches) - 1
    # An image's questions sit in consecutive batches.
    for image in {image for batch in batches for image in batch}:
        where = sorted({i for i, batch in enumerate(batches) if image in batch})
        assert where == list(range(where[0], where[-1] + 1))


def test_an_interrupted_run_resumes_and_asks_each_question_once(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    store = AnswerStore(tmp_path)
    killed = scripted(fail_after=3)
    with pytest.raises(RuntimeError, match="killed"):
        run_eval(mmad_questions, killed, store, mini_mmad, templates, batch_size=8)
    rid = store.open_run(RUN.model, "", RUN.protocol_name, RUN.backend)
    assert len(store.shards(rid)) == 3 and len(store.answered(rid)) == 24
    # A kill mid-write leaves a temporary file at most; the restart ignores it.
    (store.root / rid / ".part-00003.jsonl.deadbeef.tmp").write_text('{"question_id": "x"')
    resumed = scripted()
    answers = run_eval(mmad_questions, resumed, store, mini_mmad, templates, batch_size=8)
    calls = Counter(killed.asked) + Counter(resumed.asked)
    assert calls == Counter(mmad_questions["question_id"].to_list())  # exactly once each
    assert answers.height == mmad_questions.height
    assert answers["question_id"].n_unique() == mmad_questions.height
    # A third run has nothing left to ask.
    idle = scripted()
    again = run_eval(mmad_questions, idle, store, mini_mmad, templates)
    assert idle.batches == [] and again.equals(answers)


def test_protocols_and_models_are_separate_runs(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    store = AnswerStore(tmp_path)
    subset = mmad_questions.head(10)
    first, second = scripted(), scripted()
    run_eval(subset, first, store, mini_mmad, templates)
    other = RunInfo("scripted-model", "", "scripted", Protocol(shots=0))
    answers = run_eval(subset, second, store, mini_mmad, templates, run=other)
    assert len(first.asked) == len(second.asked) == 10
    assert answers["run_id"].n_unique() == 1
    assert len([p for p in store.root.iterdir() if p.is_dir()]) == 2


# rule, response, parsed by MMAD's rule, by the think rule, the gpt_answer stored
@pytest.mark.parametrize(
    "case",
    [
        ("mmad", "A, no wait: B", "B", "A", "B"),  # MMAD: the last letter
        ("think", "A, no wait: B", "B", "A", "A"),  # think: the first letter
        ("think", "<think>B?</think><answer>A</answer>", "A", "A", "A"),
        # Nothing to read: MMAD's rule falls back to the closest option text (difflib finds
        # one whatever the text), the think rule has none, so the raw response is stored.
        ("think", "no letter at all", "?", None, "no letter at all"),
    ],
)
def test_gpt_answer_follows_the_protocols_rule(
    tmp_path, mini_mmad, mmad_questions, templates, scripted, case
):
    rule, response, parsed_mmad, parsed_think, gpt_answer = case
    q = mmad_questions.filter(pl.col("task") == "defect_classification").head(1)
    run = RunInfo("scripted-model", "", "scripted", Protocol(answer_rule=rule))
    backend = scripted(lambda p: response)
    answers = run_eval(q, backend, AnswerStore(tmp_path), mini_mmad, templates, run=run)
    r = answers.row(0, named=True)
    assert r["response"] == response
    # "?": MMAD's fallback picks some option letter (a str "in 'ABCD'" would let "" through)
    assert r["parsed_mmad"] == parsed_mmad or (
        parsed_mmad == "?" and r["parsed_mmad"] in set("ABCD")
    )
    assert (r["parsed_think"], r["gpt_answer"]) == (parsed_think, gpt_answer)


def test_unanswered_questions_are_asked_again_next_run(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    store = AnswerStore(tmp_path)
    subset = mmad_questions.head(12)
    skip = set(subset["question_id"].head(3))
    flaky = scripted(lambda p: None if p.question_id in skip else "A")
    answers = run_eval(subset, flaky, store, mini_mmad, templates)
    assert answers.height == 9 and not skip & set(answers["question_id"])
    retry = scripted()
    answers = run_eval(subset, retry, store, mini_mmad, templates)
    assert set(retry.asked) == skip and answers.height == 12


def test_a_backend_answering_the_wrong_count_is_an_error(
    tmp_path: Path, mini_mmad, mmad_questions, templates
):
    class Short:
        name, model = "short", "m"

        def answer(self, prompts, max_new_tokens=None):
            return ["A"] * (len(prompts) - 1)

    run = RunInfo("m", "", "short", Protocol())
    with pytest.raises(BackendError, match="answers for"):
        run_eval(
            mmad_questions.head(4), Short(), AnswerStore(tmp_path), mini_mmad, templates, run=run
        )


def test_the_run_must_name_the_backend_that_answers(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    backend = scripted(name="transformers-letter_logits")
    with pytest.raises(EvaluationError, match=r"backend\.name"):
        run_eval(mmad_questions.head(2), backend, AnswerStore(tmp_path), mini_mmad, templates)
    assert backend.batches == []


def test_repeated_question_ids_are_asked_once(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    backend = scripted()
    doubled = pl.concat([mmad_questions.head(5), mmad_questions.head(5)])
    answers = run_eval(doubled, backend, AnswerStore(tmp_path), mini_mmad, templates)
    assert len(backend.asked) == 5 and answers.height == 5


def test_an_empty_table_asks_nothing(
    tmp_path: Path, mini_mmad, mmad_questions, templates, scripted
):
    backend = scripted()
    answers = run_eval(mmad_questions.head(0), backend, AnswerStore(tmp_path), mini_mmad, templates)
    assert backend.batches == [] and answers.height == 0


def test_a_table_without_ids_is_refused(tmp_path: Path, mini_mmad, templates, scripted):
    with pytest.raises(EvaluationError, match="question_id"):
        run_eval(pl.DataFrame({"x": [1]}), scripted(), AnswerStore(tmp_path), mini_mmad, templates)


def test_answer_record_reads_the_key():
    from eval.prompting import build_prompt

    row = {
        "question_id": "q",
        "image_path": "/root/GoodsAD/cigarette_box/test/good/000001.jpg",
        "question": "Is there any defect in the object? \nA. Yes\nB. No\n",
        "options": ["Yes", "No"],
        "answer": "B",
        "mmad_type": "Anomaly Detection",
    }
    spec = build_prompt(row, Protocol(shots=0), image_root="/root")
    r = answer_record("rid", spec, "B", "mmad")
    assert set(r) == set(ANSWERS_SCHEMA)
    assert (r["image"], r["dataset"], r["category"]) == (
        "GoodsAD/cigarette_box/test/good/000001.jpg",
        "GoodsAD",
        "cigarette_box",
    )


@pytest.mark.slow
def test_evaluate_the_tiny_model_on_the_mini_mmad(
    tmp_path: Path, tiny_model_dir, mini_mmad, mmad_questions, templates
):
    backend = TransformersBackend(tiny_model_dir, batch_size=8, max_new_tokens=4, device="cpu")
    run = RunInfo("tiny-qwen25vl", "", backend.name, Protocol())
    questions = mmad_questions.filter(pl.col("source").is_in(["VisA", "MVTec-LOCO"]))
    answers = run_eval(questions, backend, AnswerStore(tmp_path), mini_mmad, templates, run=run)
    assert answers.schema == pl.Schema(ANSWERS_SCHEMA)
    assert sorted(answers["question_id"]) == sorted(questions["question_id"])
    assert answers["response"].is_not_null().all()
    assert answers["gpt_answer"].is_not_null().all()
    # Questions of an image share batches, and each batch preprocessed its distinct images
    # only (the query and its first random template), not two images per question.
    rows = questions.to_dicts()
    expected = []
    for batch in image_batches([r["image_path"] for r in rows], 8):
        keys = {Path(rows[i]["image_path"]).relative_to(mini_mmad).as_posix() for i in batch}
        expected.append(len(keys | {templates[k]["random"][0] for k in keys}))
    assert backend.images.calls == expected
    assert sum(expected) < questions.height
