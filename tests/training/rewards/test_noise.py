"""random_perturbation: seeded zero-mean Gaussian noise that continues its stream."""

from __future__ import annotations

import pickle
import statistics

from training.rewards import get_reward


def test_noise_is_zero_mean_with_the_given_std():
    values = get_reward("random_perturbation", std=0.5, seed=3)(["x"] * 20_000)
    assert abs(statistics.fmean(values)) < 0.02
    assert abs(statistics.stdev(values) - 0.5) < 0.02


def test_noise_is_reproducible_and_continues_its_stream():
    a, b = get_reward("random_perturbation", seed=7), get_reward("random_perturbation", seed=7)
    first = a(["x", "y"])
    assert first == b(["p", "q"])  # same seed, same numbers, whatever the text
    assert a(["x", "y"]) != first  # the next call continues the stream


def test_pickled_noise_continues_where_the_original_was():
    a = get_reward("random_perturbation", seed=1)
    a(["x"] * 3)
    copy = pickle.loads(pickle.dumps(a))
    assert copy(["x"] * 4) == a(["x"] * 4)


def test_zero_std_and_unseeded():
    assert get_reward("random_perturbation", std=0.0)(["x", "y"]) == [0.0, 0.0]
    assert len(get_reward("random_perturbation", seed=None)(["x"] * 5)) == 5
