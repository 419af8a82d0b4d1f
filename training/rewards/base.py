"""What every reward shares: the base class TRL sees, the error types, column and argument checks.

A reward is a frozen dataclass whose fields are its parameters and whose ``__call__`` has TRL's
signature ``f(completions, **columns) -> list[float | None]``. ``__post_init__`` validates the
fields, so the class is its own validating factory; instances pickle (no closures) and carry the
``__name__`` under which TRL logs them (``rewards/<name>/mean``). ``None`` in the returned list
means "not applicable to this row" (TRL turns it into NaN and leaves it out of the sum); it is
returned only where a row lacks the ground truth the reward needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from iad_pipeline.answers import completion_text
from iad_pipeline.errors import IadError


class RewardError(IadError, ValueError):
    """A reward asked for or called in a way that cannot work."""


class UnknownRewardError(RewardError):
    """A reward name the registry does not know."""


class RewardParamError(RewardError):
    """A reward parameter that is unknown or out of range."""


class RewardInputError(RewardError):
    """A dataset column a reward needs is missing, of the wrong length or malformed."""


@dataclass(frozen=True)
class Reward:
    """Base class: a picklable TRL reward function with a ``__name__``."""

    name: ClassVar[str] = "reward"

    @property
    def __name__(self) -> str:  # TRL's get_callable_name reads it for logging
        return self.name

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        """Score a batch as TRL calls a reward function.

        Args:
            completions: one per row, a plain string or TRL's conversational message list.
            **columns: dataset columns by name (``solution``, ``boxes``, ...), one value per
                row, plus TRL's extras (``prompts``, ``completion_ids``, ``trainer_state``...);
                columns a reward does not use are ignored.

        Returns:
            One reward per completion; ``None`` where the row lacks the needed ground truth.
        """
        raise NotImplementedError

    def _set(self, **values: Any) -> None:
        """Store validated (normalised) parameters on the frozen instance."""
        for key, value in values.items():
            object.__setattr__(self, key, value)


def texts(completions: Sequence[Any]) -> list[str]:
    """The text of each completion (plain strings or TRL's conversational message lists)."""
    return [completion_text(c) for c in completions]


def column(columns: Mapping[str, Any], key: str, n: int, reward: str) -> list[Any]:
    """The dataset column ``key`` as a list of ``n`` values; raise if it is absent."""
    values = columns.get(key)
    if values is None:
        found = sorted(k for k in columns if k not in ("trainer_state", "log_extra", "log_metric"))
        msg = (
            f"reward {reward!r} needs the dataset column {key!r}, found columns {found}; "
            f"add a {key!r} column to the training dataset (TRL passes columns by name)"
        )
        raise RewardInputError(msg)
    values = list(values)
    if len(values) != n:
        msg = (
            f"reward {reward!r}: column {key!r} has {len(values)} values for {n} completions; "
            "expected one value per completion, as TRL passes them"
        )
        raise RewardInputError(msg)
    return values


def optional_column(columns: Mapping[str, Any], key: str, n: int, reward: str) -> list[Any]:
    """Like :func:`column`, but ``n`` ``None`` values when the column is absent."""
    if columns.get(key) is None:
        return [None] * n
    return column(columns, key, n, reward)


def check_float(
    reward: str, param: str, value: Any, *, low: float | None = None, strict: bool = False
) -> float:
    """``value`` as a finite float, at least ``low`` (above it when ``strict``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict else value >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict else '>='} {low}"
        msg = f"reward {reward!r}: {param}={value!r}; expected a finite number{bound}"
        raise RewardParamError(msg)
    return float(value)


def check_int(reward: str, param: str, value: Any, *, low: int) -> int:
    """``value`` as an int of at least ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        msg = f"reward {reward!r}: {param}={value!r}; expected an integer >= {low}"
        raise RewardParamError(msg)
    return value


def check_bool(reward: str, param: str, value: Any) -> bool:
    """``value`` if it is a bool."""
    if not isinstance(value, bool):
        msg = f"reward {reward!r}: {param}={value!r}; expected True or False"
        raise RewardParamError(msg)
    return value


def check_choice(reward: str, param: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        msg = f"reward {reward!r}: {param}={value!r}; expected one of {list(allowed)}"
        raise RewardParamError(msg)
    return value


def check_letters(reward: str, param: str, value: Any) -> str:
    """``value`` if it is a non-empty string of distinct letters A-E (upper-cased)."""
    upper = value.upper() if isinstance(value, str) else ""
    if not upper or len(set(upper)) != len(upper) or not set(upper) <= set("ABCDE"):
        msg = f"reward {reward!r}: {param}={value!r}; expected distinct option letters, e.g. 'ABCD'"
        raise RewardParamError(msg)
    return upper
