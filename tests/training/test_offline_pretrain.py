"""The offline model's option-reading pre-training: drills rendered as the pipeline renders
questions, a curriculum whose first phase learns, and stale model folders rebuilt."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from iad_pipeline.questions.prompts import format_question
from training.model_setup import _drill_version
from training.offline_pretrain import (
    DRILL_VERSION,
    drill_accuracy,
    make_drill,
    pretrain_option_reading,
)
from training.tiny_model import PRETRAINING_FILE, build_tokenizer, model_config


def test_a_drill_is_a_rendered_yes_no_question_whose_letter_says_the_think_word() -> None:
    rng = random.Random(3)
    drills = [make_drill(rng, bind_only=False, max_filler=5) for _ in range(200)]
    for d in drills:
        options = re.findall(r"\n([AB])\. (Yes|No)\.", d.text)
        assert dict(options)[d.letter] == d.word
        question = d.text[d.text.index("\n") :].strip()
        assert format_question("Q", ["Yes.", "No."]).endswith("A. Yes.\nB. No.\n")
        assert question.startswith(("A. Yes.", "A. No."))
    # both words, both orders, so neither the word nor the order alone gives the letter
    assert {(d.word, d.letter) for d in drills} == {
        ("Yes", "A"),
        ("Yes", "B"),
        ("No", "A"),
        ("No", "B"),
    }
    assert {make_drill(rng, bind_only=True, max_filler=0).word for _ in range(50)} == {"Yes"}


def test_the_curriculum_must_fit_in_its_steps() -> None:
    model = Qwen2_5_VLForConditionalGeneration._from_config(model_config(build_tokenizer()))
    with pytest.raises(ValueError, match="bind_steps=5 must lie between 0 and steps=3"):
        pretrain_option_reading(model, build_tokenizer(), steps=3, bind_steps=5)


@pytest.mark.slow
def test_the_binding_phase_teaches_the_small_model_the_letter_beside_yes() -> None:
    """The curriculum's first phase (think word "Yes") has a direct gradient: 200 steps take
    the small model from chance to reading the option order."""
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(model_config(tokenizer, "small"))
    bind = [make_drill(random.Random(i), bind_only=True, max_filler=10) for i in range(100)]
    before = drill_accuracy(model, tokenizer, bind)
    report = pretrain_option_reading(model, tokenizer, steps=200, bind_steps=200, held_out=20)
    after = drill_accuracy(model, tokenizer, bind)
    assert before < 0.75
    assert after >= 0.95
    assert report["steps"] == report["bind_steps"] == 200


def test_a_model_folder_from_older_drills_is_not_taken_as_current(tmp_path: Path) -> None:
    assert _drill_version(tmp_path) is None  # built before the drills existed
    (tmp_path / PRETRAINING_FILE).write_text(json.dumps({"drill_version": DRILL_VERSION - 1}))
    assert _drill_version(tmp_path) == DRILL_VERSION - 1
    (tmp_path / PRETRAINING_FILE).write_text("{not json")
    assert _drill_version(tmp_path) is None
    (tmp_path / PRETRAINING_FILE).write_text(json.dumps({"drill_version": DRILL_VERSION}))
    assert _drill_version(tmp_path) == DRILL_VERSION
