"""The registry builds only what is asked, validates parameters and yields picklable rewards."""

from __future__ import annotations

import inspect
import pickle

import pytest

from training.rewards import (
    REWARDS,
    RewardInputError,
    RewardParamError,
    UnknownRewardError,
    get_reward,
    reward_params,
)

# The smallest parameters each reward can be built with.
PARAMS = {name: {"num_generations": 2} if name == "focal" else {} for name in REWARDS}
COMPLETION = (
    "<think>Scratch at [10, 10, 40, 40] near the rim.</think>"
    "<rethink>The scratch is real.</rethink><answer>A</answer>"
)
COLUMNS = {
    "solution": ["A", "B"],
    "boxes": [[[10, 10, 40, 40]], []],
    "completion_ids": [[1] * 9] * 2,
}


def test_registry_lists_every_reward():
    assert set(REWARDS) == {
        "format",
        "multi_stage_format",
        "choice_accuracy",
        "adfm_classification",
        "anomalyr1_choice",
        "invalid_penalty",
        "roam",
        "localization",
        "focal",
        "cosine_length",
        "repetition",
        "random_perturbation",
    }


def test_registry_holds_builders_not_built_rewards():
    assert all(inspect.isclass(builder) for builder in REWARDS.values())


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(UnknownRewardError) as info:
        get_reward("acuracy")
    message = str(info.value)
    assert "'acuracy'" in message
    assert all(name in message for name in REWARDS)


@pytest.mark.parametrize("name", [None, 3, ""])
def test_name_of_the_wrong_type_is_unknown(name):
    with pytest.raises(UnknownRewardError):
        get_reward(name)


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(RewardParamError) as info:
        get_reward("localization", alpa=0.3)
    message = str(info.value)
    assert "'alpa'" in message and "'alpha'" in message and "'normalize'" in message


def test_missing_required_parameter():
    with pytest.raises(RewardParamError, match="num_generations"):
        get_reward("focal")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("choice_accuracy", {"invalid": "minus one"}),
        ("choice_accuracy", {"invalid": float("nan")}),
        ("choice_accuracy", {"emit_rules": "yes"}),
        ("choice_accuracy", {"valid": "XYZ"}),
        ("choice_accuracy", {"valid": ""}),
        ("choice_accuracy", {"valid": "AA"}),
        ("invalid_penalty", {"penalty": True}),
        ("localization", {"alpha": float("inf")}),
        ("localization", {"normalize": 1}),
        ("focal", {"num_generations": 0}),
        ("focal", {"num_generations": 2.0}),
        ("focal", {"num_generations": 2, "gamma": -1.0}),
        ("focal", {"num_generations": 2, "p_source": "oracle"}),
        ("cosine_length", {"max_len": 256}),  # must exceed soft_cache_length
        ("cosine_length", {"soft_cache_length": -1}),
        ("repetition", {"ngram_size": 0}),
        ("random_perturbation", {"std": -0.1}),
        ("random_perturbation", {"seed": -1}),
        ("random_perturbation", {"seed": 1.5}),
    ],
)
def test_out_of_range_parameters_are_rejected(name, params):
    with pytest.raises(RewardParamError, match=name):
        get_reward(name, **params)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_reward_has_its_name(name):
    assert get_reward(name, **PARAMS[name]).__name__ == name


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_reward_pickles(name):
    reward = get_reward(name, **PARAMS[name])
    copy = pickle.loads(pickle.dumps(reward))
    assert copy.__name__ == name
    assert copy([COMPLETION] * 2, **COLUMNS) == reward([COMPLETION] * 2, **COLUMNS)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_conversational_and_plain_completions_score_alike(name):
    plain = [COMPLETION, "<think>x</think><answer>B</answer>"]
    chat = [[{"role": "assistant", "content": c}] for c in plain]
    reward_a, reward_b = get_reward(name, **PARAMS[name]), get_reward(name, **PARAMS[name])
    extra = {"prompts": ["q", "q"], "trainer_state": None, "log_extra": None, "log_metric": None}
    assert reward_a(plain, **COLUMNS) == reward_b(chat, **COLUMNS, **extra)


def test_reward_params_show_defaults():
    assert reward_params("localization") == {"alpha": 0.3, "normalize": True}


def test_column_of_the_wrong_length():
    with pytest.raises(RewardInputError, match="2 values for 3 completions"):
        get_reward("roam")(["x"] * 3, solution=["A", "B"])


def test_each_call_builds_a_new_instance():
    assert get_reward("format") is not get_reward("format")
