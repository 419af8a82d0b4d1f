"""Training recipes: the built-in ones load; every mistake is an error naming the file."""

import pytest

from training.config import RecipeError, builtin_recipes, load_recipe, recipe_training_sets

BUILTIN = ["adfm", "anomalyr1", "demo", "emit", "lriad"]


def test_the_five_recipes_ship_and_validate() -> None:
    assert builtin_recipes() == BUILTIN
    for name in BUILTIN:
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.rewards


@pytest.mark.parametrize(
    ("name", "facts"),
    [
        (
            "anomalyr1",
            {
                "model": "Qwen/Qwen2.5-VL-3B-Instruct",
                "num_generations": 8,
                "max_steps": 1000,
                "deepspeed": "zero3",
                "rewards": ["anomalyr1_choice", "roam"],
            },
        ),
        (
            "adfm",
            {
                "model": "Qwen/Qwen2.5-VL-7B-Instruct",
                "num_generations": 6,
                "num_train_epochs": 15,
                "temperature": 0.9,
                "max_completion_length": 512,
                "rewards": ["multi_stage_format", "adfm_classification", "localization"],
            },
        ),
        (
            "emit",
            {
                "num_generations": 8,
                "beta": 0.005,
                "learning_rate": 1e-5,
                "lr_scheduler_type": "cosine",
                "warmup_steps": 0.01,  # Stage2.sh (paper: 0.05)
                "num_train_epochs": 2,  # Stage2.sh (paper: 1)
                "rewards": ["choice_accuracy", "cosine_length", "format", "repetition"],
            },
        ),
        (
            "lriad",
            {
                "model": "Qwen/Qwen2-VL-7B-Instruct",
                "num_train_epochs": 1,
                "per_device_train_batch_size": 8,
                "rewards": ["format", "focal"],
            },
        ),
    ],
)
def test_recipes_carry_the_papers_settings(name: str, facts: dict) -> None:
    recipe = load_recipe(name)
    for key, value in facts.items():
        if key == "rewards":
            assert [r.name for r in recipe.rewards] == value
        elif key in ("model", "deepspeed"):
            assert getattr(recipe, key) == value
        else:
            assert recipe.grpo[key] == value


def test_paper_specific_blocks() -> None:
    adfm, emit, lriad = load_recipe("adfm"), load_recipe("emit"), load_recipe("lriad")
    assert (adfm.peft.method, adfm.peft.r, adfm.peft.alpha) == ("lora", 64, 128)
    assert adfm.image.max_pixels == 262144
    assert (emit.peft.method, emit.peft.r, emit.peft.alpha) == ("lora", 8, 32)  # Stage2.sh
    assert emit.difficulty.enabled and emit.difficulty.resample_rounds == 3
    assert [r.weight for r in emit.rewards] == [3, 1, 1, 1]
    assert lriad.peft.target_modules == ("q_proj", "v_proj")
    assert (lriad.peft.r, lriad.peft.alpha, lriad.peft.dropout) == (4, 16, 0.1)
    assert lriad.image.max_pixels == 401408


def test_each_recipe_names_its_training_set() -> None:
    assert recipe_training_sets() == {
        "adfm": "adfm_multidomain",
        "anomalyr1": "anomalyr1_fewshot",
        "demo": "emit",
        "emit": "emit",
        "lriad": "lriad",
    }


BASE = "name: x\nmodel: tiny\ntraining_set: emit\nrewards:\n  - {name: format}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "colour: red\n", "unknown key"),
        (BASE + "grpo: {num_generation: 8}\n", "not GRPOConfig fields: num_generation"),
        (BASE + "peft: {method: lora, rank: 4}\n", "peft: unknown key"),
        (BASE + "peft: {method: dora}\n", "peft.method"),
        (BASE.replace("emit", "nope"), "training_set 'nope' unknown"),
        (BASE.replace("format", "accuracy"), "reward 'accuracy'"),
        ("name: x\nmodel: tiny\nrewards: []\ntraining_set: emit\n", "at least one reward"),
        ("name: x\n", "missing required key"),
        ("[1, 2", "not valid YAML"),
        (BASE + "deepspeed: zero9\n", "deepspeed"),
    ],
)
def test_mistakes_are_errors_naming_the_file(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_unknown_recipe_lists_the_built_in_ones() -> None:
    with pytest.raises(RecipeError, match="built-in recipes: adfm, anomalyr1, demo"):
        load_recipe("nope")
