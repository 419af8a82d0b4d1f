"""Training recipes: the built-in ones load; every mistake is an error naming the file."""

import pytest

from training.config import RecipeError, builtin_recipes, load_recipe, recipe_training_sets

BUILTIN = ["adfm", "anomalyr1", "demo", "demo_emit", "emit", "lriad"]


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
    assert emit.stages == ("sft", "grpo") and emit.sft.trainable == "emit_module"
    assert emit.emit_module.active  # EMIT's soft prompt and contrastive embeddings
    assert emit.sft.args["num_train_epochs"] == 2 and emit.sft.args["learning_rate"] == 1e-5
    assert [r.weight for r in emit.rewards] == [3, 1, 1, 1]
    assert lriad.peft.target_modules == ("q_proj", "v_proj")
    assert (lriad.peft.r, lriad.peft.alpha, lriad.peft.dropout) == (4, 16, 0.1)
    assert lriad.image.max_pixels == 401408


def test_each_recipe_names_its_training_set() -> None:
    assert recipe_training_sets() == {
        "adfm": "adfm_multidomain",
        "anomalyr1": "anomalyr1_fewshot",
        "demo": "emit",
        "demo_emit": "emit",
        "emit": "emit",
        "lriad": "lriad",
    }


BASE = "name: x\nmodel: tiny\ntraining_set: emit\nrewards:\n  - {name: format}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "colour: red\n", "unknown key"),
        (BASE + "grpo: {num_generation: 8}\n", "'num_generation' is not a GRPOConfig field"),
        (BASE + "peft: {method: lora, rank: 4}\n", "peft: unknown key"),
        (BASE + "peft: {method: dora}\n", "peft.method"),
        (BASE.replace("emit", "nope"), "training_set: 'nope' unknown"),
        (BASE.replace("format", "accuracy"), "reward 'accuracy'"),
        ("name: x\nmodel: tiny\nrewards: []\ntraining_set: emit\n", "at least one reward"),
        ("name: x\n", "missing required key"),
        ("[1, 2", "not valid YAML"),
        (BASE + "deepspeed: zero9\n", "deepspeed"),
        # types and ranges (issue 10, item 11): one line naming the file and the field
        (BASE + "grpo: {learning_rate: fast}\n", r"grpo\.learning_rate: .*'fast'"),
        (BASE + "grpo: {num_generations: -1}\n", r"grpo\.num_generations: must be >= 2"),
        (BASE + "deepspeed: /etc/passwd\n", r"\.deepspeed: '/etc/passwd' is neither"),
        (BASE + "max_train_samples: -5\n", r"max_train_samples: must be >= 1"),
        (BASE + "max_train_samples: many\n", r"max_train_samples: .*'many'"),
        (BASE + "peft: {method: lora, r: 0}\n", r"peft\.r: must be >= 1"),
        (BASE + "peft: {method: lora, dropout: 2}\n", r"peft\.dropout"),
        (BASE + "image: {min_pixels: 5000, max_pixels: 100}\n", r"image\.max_pixels"),
        (BASE + "difficulty: {enabled: yes, resample_rounds: -2}\n", r"resample_rounds: must"),
        ("name: ../x\nmodel: tiny\ntraining_set: emit\n", r"\.name: letters"),
        # output paths come from the command line, never the recipe (issue 10, item 5)
        (BASE + "grpo: {output_dir: /tmp/elsewhere}\n", r"grpo\.output_dir: not allowed.*--output"),
        (BASE + "grpo: {logging_dir: /tmp/logs}\n", r"grpo\.logging_dir: not allowed"),
        (BASE + "grpo: {deepspeed: zero2}\n", r"grpo\.deepspeed: not allowed"),
        (
            BASE + "stages: [sft, grpo]\nsft: {args: {output_dir: /tmp/x}}\n",
            r"sft\.args\.output_dir: not allowed",
        ),
        (BASE + "stages: [sft, grpo]\nsft: {think: essay}\n", r"sft\.think: empty or option"),
        (BASE + "evaluation: {protocol: gpt}\n", r"evaluation\.protocol: 'gpt' unknown"),
        (BASE + "evaluation: {shuffle_options: maybe}\n", r"evaluation\.shuffle_options"),
        # options nothing would read are errors (issue 9, item 7)
        (BASE + "evaluation: {seed: 3}\n", r"evaluation\.seed: set but .*shuffle_options"),
        (BASE + "peft: {r: 4}\n", r"peft: r set but peft\.method is none"),
        (BASE + "difficulty: {resample_rounds: 2}\n", r"difficulty: resample_rounds set but"),
        (BASE + "sft: {trainable: projector}\n", r"sft: an sft block but no sft stage"),
        (BASE + "stages: [grpo, sft]\n", r"stages: stages run in the order sft, grpo"),
        (BASE + "stages: [sft, rl]\n", r"stages: a list of sft and/or grpo"),
        (BASE + "stages: [sft, grpo]\nsft: {trainable: adapter}\n", r"adapter needs peft"),
        (
            BASE + "stages: [sft, grpo]\npeft: {method: lora}\nsft: {trainable: all}\n",
            r"all cannot train with a LoRA adapter",
        ),
        (BASE + "stages: [sft, grpo]\nsft: {args: {max_steps: 0}}\n", r"sft\.args\.max_steps"),
        (BASE + "stages: [sft, grpo]\nsft: {args: {beta: 0.1}}\n", r"not a SFTConfig field"),
        (BASE + "prompt: short\n", r"\.prompt: full or question, found 'short'"),
        (BASE + "tasks: [detection]\n", r"\.tasks: 'detection' unknown; valid: anomaly_detection"),
        (BASE + "tasks: []\n", r"\.tasks: a non-empty list"),
        (BASE + "tasks: anomaly_detection\n", r"\.tasks: "),
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


def test_a_deepspeed_json_must_parse_as_a_deepspeed_config(tmp_path) -> None:
    good = tmp_path / "ds.json"
    good.write_text('{"zero_optimization": {"stage": 2}}')
    bad = tmp_path / "other.json"
    bad.write_text('{"hello": 1}')
    path = tmp_path / "r.yaml"
    path.write_text(BASE + "deepspeed: ds.json\n")
    assert load_recipe(path).deepspeed_config() == str(good)
    path.write_text(BASE + "deepspeed: other.json\n")
    with pytest.raises(RecipeError, match="not a DeepSpeed config"):
        load_recipe(path)


def test_yaml_numbers_in_strings_are_read_as_numbers(tmp_path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(BASE + "grpo: {learning_rate: 1e-5, max_steps: 10}\n")  # YAML: a string
    assert load_recipe(path).grpo == {"learning_rate": 1e-5, "max_steps": 10}


def test_an_alias_bomb_fails_fast_with_a_small_message(tmp_path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text(BASE + "\n".join(lines) + "\n")
    assert path.stat().st_size < 1100
    with pytest.raises(RecipeError, match="expands to more than") as info:
        load_recipe(path)
    assert len(str(info.value)) < 300 and str(path) in str(info.value)


def test_oversized_and_deeply_nested_recipes_are_refused(tmp_path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "description: " + "x" * 300_000 + "\n")
    with pytest.raises(RecipeError, match="a recipe is at most"):
        load_recipe(big)
    deep = tmp_path / "deep.yaml"
    deep.write_text(BASE + "description: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(RecipeError, match="nested") as info:
        load_recipe(deep)
    assert len(str(info.value)) < 300


def _fields_of(cls, prefix: str = "") -> list[str]:
    import dataclasses

    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default):
            out += _fields_of(type(f.default), f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def test_every_recipe_field_is_read_by_the_training_code() -> None:
    """Walks the recipe schema: each field must be read (``.field``) by code that trains or
    reports a run, outside the module that defines it (issue 9, item 7)."""
    import inspect
    import re
    from pathlib import Path

    from training.config import Recipe, evaluation_protocol

    root = Path(__file__).resolve().parents[2]
    readers = "".join(
        (root / p).read_text()
        for p in (
            # the launch script and the modules it is split into (model_setup, dataset,
            # arguments, trainer_fields, callbacks, report, sft, trainer, emit_stages...); not
            # the modules that define and parse the schema
            *(
                q.relative_to(root)
                for q in sorted((root / "training").glob("*.py"))
                if q.name not in ("config.py", "recipe_yaml.py")
            ),
            *(
                q.relative_to(root)
                for q in sorted((root / "iad_pipeline/models/emit").glob("*.py"))
            ),
        )
    )
    # the evaluation protocol a run records for its checkpoints reads the evaluation block
    readers += inspect.getsource(evaluation_protocol)
    # config.py itself reads a few: deepspeed (deepspeed_config), source (relative paths)
    config_reads = {"deepspeed", "source"}
    unread = []
    for name in _fields_of(Recipe):
        attr = name.rsplit(".", 1)[-1]
        if attr in config_reads:
            continue
        if not re.search(rf"\.{attr}\b", readers):
            unread.append(name)
    assert unread == [], f"recipe fields nothing reads: {unread}"
