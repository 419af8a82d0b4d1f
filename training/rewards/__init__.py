"""GRPO reward functions for TRL, built by name from a registry.

>>> from training.rewards import get_reward
>>> get_reward("format")(["<think>scan</think><answer>A</answer>"])
[1.0]
"""

from training.rewards.base import (
    Reward,
    RewardError,
    RewardInputError,
    RewardParamError,
    UnknownRewardError,
)
from training.rewards.registry import REWARDS, get_reward, reward_params

__all__ = [
    "REWARDS",
    "Reward",
    "RewardError",
    "RewardInputError",
    "RewardParamError",
    "UnknownRewardError",
    "get_reward",
    "reward_params",
]
