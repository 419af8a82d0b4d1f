"""The reward registry: names used in recipes mapped to the classes that build them.

Only the rewards a recipe names are built (:func:`get_reward`); importing the registry builds
nothing. A reward class is its own factory: its fields are its parameters, with their defaults,
and its ``__post_init__`` validates them.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from training.rewards.base import Reward, RewardParamError, UnknownRewardError
from training.rewards.choice import (
    AdfmClassification,
    AnomalyR1Choice,
    ChoiceAccuracy,
    InvalidPenalty,
    Roam,
)
from training.rewards.focal import Focal
from training.rewards.format import Format, MultiStageFormat
from training.rewards.length import CosineLength, Repetition
from training.rewards.localization import Localization
from training.rewards.noise import RandomPerturbation

REWARDS: dict[str, type[Reward]] = {
    cls.name: cls
    for cls in (
        Format,
        MultiStageFormat,
        ChoiceAccuracy,
        AdfmClassification,
        AnomalyR1Choice,
        InvalidPenalty,
        Roam,
        Localization,
        Focal,
        CosineLength,
        Repetition,
        RandomPerturbation,
    )
}


def reward_params(name: str) -> dict[str, Any]:
    """The parameters of reward ``name`` with their defaults (``MISSING`` when required).

    Example:
        >>> reward_params("repetition")
        {'ngram_size': 4, 'max_penalty': -1.0}
    """
    return {f.name: f.default for f in fields(_builder(name)) if f.init}


def get_reward(name: str, **params: Any) -> Reward:
    """Build the reward ``name`` with ``params`` (TRL reward function, ``__name__ == name``).

    Args:
        name: a key of :data:`REWARDS`.
        **params: the reward's parameters (see :func:`reward_params`).

    Returns:
        A picklable callable ``f(completions, **columns) -> list[float | None]``.

    Raises:
        UnknownRewardError: ``name`` is not registered (the message lists the valid names).
        RewardParamError: a parameter is unknown, missing or out of range.

    Example:
        >>> accuracy = get_reward("choice_accuracy", invalid=-1.0, emit_rules=True)
        >>> accuracy.__name__, accuracy(["<answer>B</answer>", "<answer>(B)</answer>"],
        ...                             solution=["B", "B"])
        ('choice_accuracy', [1.0, -1.0])
    """
    builder = _builder(name)
    known = reward_params(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        msg = (
            f"reward {name!r}: unknown parameters {unknown}; valid parameters are "
            f"{sorted(known)}; fix the recipe's reward parameters"
        )
        raise RewardParamError(msg)
    missing = sorted(k for k, default in known.items() if default is MISSING and k not in params)
    if missing:
        msg = f"reward {name!r}: missing required parameters {missing}; pass them in the recipe"
        raise RewardParamError(msg)
    return builder(**params)


def _builder(name: str) -> type[Reward]:
    if not isinstance(name, str) or name not in REWARDS:
        msg = f"unknown reward {name!r}; valid rewards are {sorted(REWARDS)}"
        raise UnknownRewardError(msg)
    return REWARDS[name]
