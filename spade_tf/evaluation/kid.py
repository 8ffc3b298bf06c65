"""Kernel Inception Distance (Binkowski et al., 2018), as the common tools compute it.

The unbiased estimate of the squared maximum mean discrepancy (MMD^2) between the two
feature sets under the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3`` (d: the
feature dimension), averaged over ``num_subsets`` random subsets of ``subset_size``
features drawn without replacement from each set (the defaults, 100 subsets of 1000, are
those of clean-fid's ``kernel_distance``; it and StyleGAN2-ADA report the mean only, the
standard deviation over the subsets is added here). Unbiased means that two samples of
one distribution score 0 on average, so single subsets can be slightly negative.

When both sets hold exactly ``subset_size`` features (after clipping), every draw is the
whole of both sets: there is one possible subset, computed once, and no spread (``std``
is None), rather than ``num_subsets`` copies of one value reported with a spread of 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from spade_tf.evaluation.errors import EvaluationError


class KernelDistance(NamedTuple):
    """KID: mean and standard deviation over the subsets, and how they were drawn
    (``std`` is None with one subset: a single value has no spread)."""

    mean: float
    std: float | None
    subset_size: int
    num_subsets: int


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(x @ y.T / d + 1) ** 3`` for ``[n, d]`` and ``[m, d]`` features -> ``[n, m]``."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equally sized ``[m, d]`` feature sets (m >= 2)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    # The unbiased estimate leaves out each sample's similarity with itself.
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray,
                              num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> KernelDistance:
    """KID between two ``[N, D]`` feature sets; ``subset_size`` is clipped to the smaller set."""
    a = _features("features_a", features_a)
    b = _features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise EvaluationError(f"the two feature sets have different dimensions: {a.shape[1]} and "
                              f"{b.shape[1]}; compute both with the same network.")
    if num_subsets < 1 or subset_size < 2:
        raise EvaluationError(f"KID needs num_subsets >= 1 and subset_size >= 2; got "
                              f"{num_subsets} and {subset_size}.")
    m = min(subset_size, a.shape[0], b.shape[0])
    if a.shape[0] == b.shape[0] == m:
        num_subsets = 1  # every draw would be this one pair of whole sets
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets, dtype=np.float64)
    for index in range(num_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        values[index] = mmd2_unbiased(x, y)
    spread = float(values.std()) if num_subsets > 1 else None
    return KernelDistance(float(values.mean()), spread, m, num_subsets)


def _features(name: str, features: np.ndarray) -> np.ndarray:
    values = np.asarray(features, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2:
        raise EvaluationError(f"{name} must be [num_samples >= 2, feature_dim]; got shape "
                              f"{values.shape}.")
    if not np.all(np.isfinite(values)):
        raise EvaluationError(f"{name} contain NaN or infinite values; check the network and "
                              "the images.")
    return values
