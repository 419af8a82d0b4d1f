"""training/dataset.py: the recipe's prompt form is what a stage trains on."""

import dataclasses

import pytest

from iad_pipeline.errors import IadError
from iad_pipeline.questions.export import save_hf_dataset
from tests.support.training_sets import emit_training_set
from training.config import load_recipe
from training.dataset import load_training_dataset


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return emit_training_set(tmp_path_factory.mktemp("export"))["emit"]


HINT = "<|fim_pad|>"  # EMIT's module placeholder token in the recipe's prompts


def _text(row) -> str:
    return "".join(b["text"] or "" for b in row["prompt"][0]["content"] if b["type"] == "text")


def test_the_question_form_trains_on_the_images_and_the_question_alone(export) -> None:
    recipe = load_recipe("emit")  # with EMIT's module: its placeholder follows the question
    full = load_training_dataset(export, recipe, seed=0)
    short = load_training_dataset(export, dataclasses.replace(recipe, prompt="question"), seed=0)
    assert len(full) == len(short)
    for f, s in zip(full, short, strict=True):
        blocks = s["prompt"][0]["content"]
        images = [b for b in blocks if b["type"] == "image"]
        assert len(images) == len(s["images"]) == len(f["images"])
        # the images first, then the question with its options, as evaluation asks it
        assert [b["type"] for b in blocks[: len(images)]] == ["image"] * len(images)
        question = s["question"]
        assert question.endswith("\n") and "\nA. " in question
        # nothing else but the module's hint tokens after it: no instruction, no knowledge
        assert _text(s).split(HINT)[0] == question and question in _text(f)
        assert len(_text(f).split(HINT)[0]) > 5 * len(question)


def test_an_export_without_the_question_column_is_refused(export, tmp_path) -> None:
    import datasets

    old = save_hf_dataset(datasets.load_from_disk(str(export)).remove_columns("question"), tmp_path)
    recipe = dataclasses.replace(load_recipe("emit"), prompt="question")
    with pytest.raises(IadError, match="materialize training_set\\[emit\\] again"):
        load_training_dataset(old, recipe, seed=0)
    assert len(load_training_dataset(old, load_recipe("emit"), seed=0)) > 0


def test_tasks_keep_only_those_questions(export) -> None:
    recipe = dataclasses.replace(load_recipe("emit"), tasks=("anomaly_detection",))
    rows = load_training_dataset(export, recipe, seed=0, stage="grpo")
    assert set(rows["task"]) == {"anomaly_detection"}
    every = load_training_dataset(export, load_recipe("emit"), seed=0, stage="grpo")
    assert len(rows) == sum(t == "anomaly_detection" for t in every["task"]) < len(every)
    # EMIT's stage 1 aligns its module on detection and localization: none of these left
    only = dataclasses.replace(recipe, tasks=("object_classification",))
    with pytest.raises(IadError, match=r"object_classification.*for its sft stage"):
        load_training_dataset(export, only, seed=0, stage="sft")
