"""Learning direction: 60 SFT steps on the tiny model moves held-out accuracy off chance on
a task only the image answers (a red or a blue square; letters balanced, options fixed)."""

import dataclasses
import random

import pytest
import torch
from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from training.config import load_recipe
from training.model_setup import load_model
from training.sft import build_sft_trainer, letter_accuracy, sft_config
from training.tiny_model import build_tiny_qwen25vl

QUESTION = "Is the square red? A. Yes. B. No."


def _rows(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    answers = ["A", "B"] * (n // 2)
    rng.shuffle(answers)
    images = []
    for answer in answers:
        shade = rng.randint(0, 60)
        colour = (
            (200 + shade // 2, shade, shade) if answer == "A" else (shade, shade, 200 + shade // 2)
        )
        images.append(Image.new("RGB", (56, 56), colour))
    return Dataset.from_dict(
        {
            "prompt": [
                [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": QUESTION}],
                    }
                ]
            ]
            * n,
            "images": [[image] for image in images],
            "solution": answers,
            "style": ["emit"] * n,
        }
    ).cast_column("images", [ImageFeature()])


@pytest.mark.slow
def test_sixty_sft_steps_move_held_out_accuracy_off_chance(tmp_path) -> None:
    torch.manual_seed(0)
    # the demo's small model without its option-reading drills: the image task alone
    small = build_tiny_qwen25vl(tmp_path / "small", full_size="small", read_options=False)
    recipe = dataclasses.replace(
        load_recipe("demo"),
        model=str(small),
        sft=dataclasses.replace(
            load_recipe("demo").sft,
            args={"per_device_train_batch_size": 8, "learning_rate": 3e-3, "logging_steps": 10},
        ),
    )
    train, held_out = _rows(240, seed=0), _rows(60, seed=1)
    model, processor = load_model(recipe, tmp_path)
    before = letter_accuracy(model, processor, held_out)
    config = sft_config(recipe, tmp_path / "sft", 60, 0)
    config.save_strategy = "no"
    build_sft_trainer(recipe, model, processor, train, config).train()
    after = letter_accuracy(model, processor, held_out)
    assert after >= 0.8, (before, after)
    assert after > before


def test_sft_think_option_states_the_correct_option_before_the_letter() -> None:
    """``sft.think: option``: the reference think block is the correct option's text (the
    finding), the answer the letter the question's (shuffled) options give it."""
    from training.sft import to_sft

    prompt = "Question: Is there any defect in the object? \nA. No.\nB. Yes.\n"
    rows = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": prompt}]] * 2,
            "images": [[], []],
            "solution": ["B", "A"],
            "style": ["emit", "emit"],
        }
    )
    texts = [r["completion"][0]["content"][0]["text"] for r in to_sft(rows, "option")]
    assert texts == ["<think>Yes</think><answer>B</answer>", "<think>No</think><answer>A</answer>"]
    plain = [r["completion"][0]["content"][0]["text"] for r in to_sft(rows)]
    assert plain == ["<think></think><answer>B</answer>", "<think></think><answer>A</answer>"]
    with pytest.raises(ValueError, match="without a think block"):
        to_sft(Dataset.from_dict({**rows.to_dict(), "style": ["mmad", "mmad"]}), "option")


class _Recording:
    """The real processor, noting every text it is asked to encode."""

    def __init__(self, processor):
        self.processor, self.texts = processor, []
        self.tokenizer = processor.tokenizer
        self.apply_chat_template = processor.apply_chat_template

    def __call__(self, *args, **kwargs):
        self.texts += kwargs.get("text") or []
        return self.processor(*args, **kwargs)


def test_letter_accuracy_lets_a_think_model_state_its_finding_first(tmp_path) -> None:
    """``sft.think: option``: the letter is scored after the model's own finding, not after an
    empty think block it never saw in training."""
    torch.manual_seed(0)
    model_dir = build_tiny_qwen25vl(tmp_path / "tiny")
    model, processor = load_model(
        dataclasses.replace(load_recipe("demo"), model=str(model_dir)), tmp_path
    )
    question = "Is the square red? \nA. Yes.\nB. No.\n"
    content = [{"type": "image"}, {"type": "text", "text": question}]
    rows = _rows(4, seed=0).map(lambda r: {"prompt": [{"role": "user", "content": content}]})
    recording = _Recording(processor)
    accuracy = letter_accuracy(model, recording, rows, think="option")
    assert 0.0 <= accuracy <= 1.0
    # per row: the finding after "<think>", then the letter after the finding it chose
    ends = [t[t.rindex("<|im_start|>assistant") :] for t in recording.texts]
    assert len(ends) == 2 * len(rows)
    assert all(e.endswith("<think>") for e in ends[0::2])
    assert all(
        e.endswith(("<think>Yes</think><answer", "<think>No</think><answer")) for e in ends[1::2]
    )
    recording.texts.clear()
    letter_accuracy(model, recording, rows)  # empty: the letter after an empty think block
    assert all("<think></think><answer" in t for t in recording.texts)
