"""AD-FM's ablation baseline: a reward of pure zero-mean Gaussian noise.

AD-FM (section 4.3, Table 4, "random reward") adds ``r_random`` to isolate the effect of reward
variance from that of localization, after Random Reward Perturbation (Ma et al. 2025,
arXiv 2506.08737). The paper gives no standard deviation; ours defaults to 0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.rewards.base import Reward, check_float, check_int


@dataclass(frozen=True, eq=False)
class RandomPerturbation(Reward):
    """``random_perturbation``: ``r_random ~ N(0, std^2)`` per completion, ignoring the text.

    The instance holds a ``numpy.random.Generator`` seeded with ``seed``; successive calls
    continue its stream (two calls give different noise; a new instance with the same seed
    repeats it). A pickled copy carries the generator's state, so it continues from where the
    original was. Every process of a distributed run seeded alike draws the same numbers;
    give each rank its own seed if that matters.

    Args:
        std: the standard deviation of the noise (ours: 0.1; AD-FM states none).
        seed: the generator's seed (``None``: fresh entropy, not reproducible).

    Example:
        >>> r = RandomPerturbation(std=0.1, seed=0)
        >>> first, second = r(["a", "b"]), r(["a", "b"])
        >>> first != second, first == RandomPerturbation(std=0.1, seed=0)(["x", "y"])
        (True, True)
    """

    name = "random_perturbation"
    std: float = 0.1
    seed: int | None = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        seed = None if self.seed is None else check_int(self.name, "seed", self.seed, low=0)
        std = check_float(self.name, "std", self.std, low=0.0)
        self._set(std=std, seed=seed, rng=np.random.default_rng(seed))

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float | None]:
        return [float(v) for v in self.rng.normal(0.0, self.std, size=len(completions))]
