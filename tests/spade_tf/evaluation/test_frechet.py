"""Fréchet distance against closed forms, PyTorch's eigenvalues and sampled Gaussians."""

import numpy as np
import pytest
from support import import_torch

from spade_tf.evaluation import EvaluationError, feature_statistics, frechet_distance


def _closed_form(mu_a, var_a, mu_b, var_b) -> float:
    """FID of Gaussians whose covariances share eigenvectors (variances var_a, var_b)."""
    return float(np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2))


def _rotation(rng, dim):
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q


def test_diagonal_and_commuting_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    var_a, var_b = rng.uniform(0.1, 4.0, 6), rng.uniform(0.1, 4.0, 6)
    expected = _closed_form(mu_a, var_a, mu_b, var_b)
    assert frechet_distance(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(
        expected, rel=1e-12)
    q = _rotation(rng, 6)  # same eigenvectors: C_a and C_b commute
    cov_a, cov_b = q @ np.diag(var_a) @ q.T, q @ np.diag(var_b) @ q.T
    assert frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(expected, rel=1e-10)


def test_known_value_by_hand():
    # |(1, 0) - (0, 0)|^2 + (sqrt 4 - sqrt 1)^2 + (sqrt 9 - sqrt 1)^2 = 1 + 1 + 4
    assert frechet_distance(np.array([1.0, 0.0]), np.diag([4.0, 9.0]), np.zeros(2),
                            np.eye(2)) == pytest.approx(6.0, abs=1e-12)


def test_identical_statistics_give_exactly_zero():
    features = np.random.default_rng(1).normal(size=(40, 8))
    mean, cov = feature_statistics(features)
    assert frechet_distance(mean, cov, mean, cov) == 0.0
    # The same set in another order: equal up to rounding, never negative.
    shuffled = feature_statistics(features[::-1])
    value = frechet_distance(mean, cov, *shuffled)
    assert 0.0 <= value < 1e-10


def test_random_full_rank_case_matches_torch_eigenvalues():
    torch = import_torch()
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 12)), rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12))
    mean_a, cov_a = feature_statistics(a)
    mean_b, cov_b = feature_statistics(b + 0.5)
    # Independent route: eigenvalues of the non-symmetric C_a C_b (general solver).
    eigenvalues = torch.linalg.eigvals(torch.from_numpy(cov_a @ cov_b))
    trace_sqrt = torch.sqrt(eigenvalues).real.sum().item()
    expected = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * trace_sqrt)
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)


def test_rank_deficient_covariances_stay_finite():
    torch = import_torch()
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 32)), rng.normal(size=(6, 32)) + 0.1  # fewer samples than dims
    mean_a, cov_a = feature_statistics(a)
    mean_b, cov_b = feature_statistics(b)
    assert np.linalg.matrix_rank(cov_a) == 4
    value = frechet_distance(mean_a, cov_a, mean_b, cov_b)
    assert np.isfinite(value) and value > 0
    eigenvalues = torch.linalg.eigvals(torch.from_numpy(cov_a @ cov_b))
    trace_sqrt = torch.sqrt(eigenvalues).real.sum().item()
    expected = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                - 2 * trace_sqrt)
    assert value == pytest.approx(expected, rel=1e-6)


def test_samples_of_two_gaussians_converge_to_the_closed_form():
    rng = np.random.default_rng(4)
    mu_a, mu_b = np.array([0.0, 1.0, -1.0, 2.0]), np.array([0.5, 0.0, -1.0, 1.0])
    var_a, var_b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 1.0, 0.5, 1.0])
    q = _rotation(rng, 4)
    sample_a = (rng.normal(size=(50_000, 4)) * np.sqrt(var_a)) @ q.T + mu_a
    sample_b = (rng.normal(size=(50_000, 4)) * np.sqrt(var_b)) @ q.T + mu_b
    expected = _closed_form(mu_a, var_a, mu_b, var_b)  # rotation changes no distance
    value = frechet_distance(*feature_statistics(sample_a), *feature_statistics(sample_b))
    assert value == pytest.approx(expected, rel=0.03)


def test_feature_statistics_use_ddof_1():
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    mean, cov = feature_statistics(x)
    np.testing.assert_allclose(mean, [2.0, 2.0])
    centred = x - mean
    np.testing.assert_allclose(cov, centred.T @ centred / 2)


@pytest.mark.parametrize("args, message", [
    ((np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "different dimensions"),
    ((np.zeros(3), np.eye(3)[:2], np.zeros(3), np.eye(3)), "square"),
    ((np.zeros(2), np.array([[1.0, np.nan], [np.nan, 1.0]]), np.zeros(2), np.eye(2)), "NaN"),
    ((np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2)), "symmetric"),
])
def test_invalid_statistics_are_explained(args, message):
    with pytest.raises(EvaluationError, match=message):
        frechet_distance(*args)


def test_feature_statistics_need_two_finite_samples():
    with pytest.raises(EvaluationError, match="at least 2 samples"):
        feature_statistics(np.ones((1, 4)))
    with pytest.raises(EvaluationError, match="2-D"):
        feature_statistics(np.ones(4))
    with pytest.raises(EvaluationError, match="NaN"):
        feature_statistics(np.array([[1.0, np.inf], [0.0, 0.0]]))
