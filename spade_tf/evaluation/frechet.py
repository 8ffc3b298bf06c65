"""The Fréchet distance between two Gaussians fitted to feature sets (FID).

``FID = |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2))``.

The common tools take the matrix square root with ``scipy.linalg.sqrtm``; this package
does not depend on SciPy and uses the identity ``tr((C_a C_b)^(1/2)) = sum_i sqrt(l_i)``,
where ``l_i`` are the eigenvalues of the symmetric positive semi-definite matrix
``C_a^(1/2) C_b C_a^(1/2)`` (similar to ``C_a C_b``, so it has the same eigenvalues).
Symmetric eigendecompositions are stable for the rank-deficient covariances of small
sample sets, where ``sqrtm`` can return complex or non-finite values.
"""

from __future__ import annotations

import numpy as np

from spade_tf.evaluation.errors import EvaluationError

# Relative asymmetry above which a "covariance" is rejected rather than symmetrized.
_SYMMETRY_TOLERANCE = 1e-6


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, ``ddof=1`` like ``numpy.cov``) of ``[N, D]`` features.

    ``ddof=1`` is ``np.cov(features, rowvar=False)``, as pytorch-fid and clean-fid compute
    it; StyleGAN2-ADA's metrics divide by N instead (a relative difference of 1/N).
    """
    values = np.asarray(features, dtype=np.float64)
    if values.ndim != 2:
        raise EvaluationError(f"features must be a 2-D array [num_samples, feature_dim]; got "
                              f"shape {values.shape}.")
    if values.shape[0] < 2:
        raise EvaluationError(f"a covariance needs at least 2 samples; got {values.shape[0]}. "
                              "Evaluate more images.")
    _check_finite("features", values)
    return values.mean(axis=0), np.cov(values, rowvar=False, ddof=1).reshape(
        values.shape[1], values.shape[1])


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray,
                     cov_b: np.ndarray) -> float:
    """Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b), in float64, >= 0."""
    mu_a, sigma_a = _check_gaussian("a", mean_a, cov_a)
    mu_b, sigma_b = _check_gaussian("b", mean_b, cov_b)
    if mu_a.shape != mu_b.shape:
        raise EvaluationError(f"the two feature sets have different dimensions: {mu_a.shape[0]} "
                              f"and {mu_b.shape[0]}; compute both with the same network.")
    if np.array_equal(mu_a, mu_b) and np.array_equal(sigma_a, sigma_b):
        return 0.0  # exact, where the general formula leaves rounding residue
    diff = mu_a - mu_b
    root_a = _psd_sqrt(sigma_a)
    middle = root_a @ sigma_b @ root_a
    # Tiny negative eigenvalues are rounding of zero ones (rank-deficient covariances).
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    distance = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))  # rounding can dip just below 0 for equal sets


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues -> 0)."""
    eigenvalues, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def _check_finite(what: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise EvaluationError(f"{what} contain {bad} NaN or infinite values; the network "
                              "produced invalid features (check the weights file and the images).")


def _check_gaussian(name: str, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(cov, dtype=np.float64)
    if mu.ndim != 1:
        raise EvaluationError(f"mean_{name} must be a vector [D]; got shape {mu.shape}.")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise EvaluationError(f"cov_{name} must be a square [D, D] matrix matching mean_{name} "
                              f"(D={mu.shape[0]}); got shape {sigma.shape}.")
    _check_finite(f"mean_{name}", mu)
    _check_finite(f"cov_{name}", sigma)
    scale = max(float(np.abs(sigma).max(initial=0.0)), np.finfo(np.float64).tiny)
    asymmetry = float(np.abs(sigma - sigma.T).max(initial=0.0)) / scale
    if asymmetry > _SYMMETRY_TOLERANCE:
        raise EvaluationError(f"cov_{name} is not symmetric (relative asymmetry {asymmetry:.2g}); "
                              "expected a covariance matrix, e.g. from feature_statistics().")
    return mu, (sigma + sigma.T) / 2
