"""KID against a direct double loop over the kernel's definition."""

import numpy as np
import pytest

from spade_tf.evaluation import EvaluationError, kernel_inception_distance
from spade_tf.evaluation.kid import mmd2_unbiased


def _loop_mmd2(x, y) -> float:
    """Unbiased MMD^2 with k(u, v) = (u.v / d + 1)^3, written out pair by pair."""
    m, d = x.shape

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v, strict=True)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd_matches_the_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_loop_mmd2(x, y), rel=1e-12)


def test_sets_of_the_subset_size_give_one_subset_without_spread():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(9, 4)) * 1.5
    # subset_size is clipped to 6: with equal sizes every draw is the whole of both sets
    # (MMD ignores order), so there is one subset, not 5 copies with a spread of 0.
    kid = kernel_inception_distance(x, y[:6], num_subsets=5, subset_size=1000, seed=3)
    assert (kid.subset_size, kid.num_subsets, kid.std) == (6, 1, None)
    assert kid.mean == pytest.approx(_loop_mmd2(x, y[:6]), rel=1e-12)
    smaller = kernel_inception_distance(x, y, num_subsets=4, subset_size=1000, seed=3)
    assert smaller.subset_size == 6 and smaller.num_subsets == 4 and smaller.std > 0
    asked_once = kernel_inception_distance(x, y, num_subsets=1, subset_size=4, seed=3)
    assert asked_once.num_subsets == 1 and asked_once.std is None


def test_seeded_and_near_zero_for_one_distribution():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    first = kernel_inception_distance(a, b, num_subsets=20, subset_size=100, seed=5)
    again = kernel_inception_distance(a, b, num_subsets=20, subset_size=100, seed=5)
    assert first == again
    shifted = kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=100, seed=5)
    assert abs(first.mean) < 0.02 * shifted.mean
    assert abs(first.mean) < 3 * first.std  # unbiased: 0 within the subset spread


def test_invalid_inputs_are_explained():
    with pytest.raises(EvaluationError, match="different dimensions"):
        kernel_inception_distance(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(EvaluationError, match="num_samples >= 2"):
        kernel_inception_distance(np.ones((1, 3)), np.ones((4, 3)))
    with pytest.raises(EvaluationError, match="subset_size >= 2"):
        kernel_inception_distance(np.ones((4, 3)), np.ones((4, 3)), subset_size=1)
