"""Kernel Inception Distance (Bińkowski et al., 2018, "Demystifying MMD GANs") from feature arrays.

KID is the unbiased estimate of MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over
random subsets; defaults follow torch-fidelity (100 subsets of 1,000 rows each, drawn without replacement from
`np.random.RandomState(seed)`, seed 2020; the spread is the population std over subsets). Float64 on the host.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kernel_inception_distance"]

SUBSETS = 100
SUBSET_SIZE = 1000
SEED = 2020


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """(n, d), (m, d) -> (n, m) kernel matrix (gamma xᵀy + coef0)^degree; gamma defaults to 1/d."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD² from kernel matrices of two equal-size samples (m, m): the diagonals of K_XX and K_YY are
    left out, K_XY is averaged whole."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, *, subsets: int = SUBSETS,
                              subset_size: int = SUBSET_SIZE, seed: int = SEED) -> tuple[float, float]:
    """(mean, std) of unbiased MMD² over `subsets` random subsets of `subset_size` rows of each feature set.

    real: (N, d), fake: (M, d) features of the same network. `subset_size` is capped at min(N, M) (>= 2).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"KID needs two (n, d) feature arrays of equal d, got {real.shape} and {fake.shape}")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 rows in each set, got {len(real)} and {len(fake)}")
    if subsets < 1:
        raise ValueError(f"KID subsets must be >= 1, got {subsets}")
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        values.append(mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y)))
    return float(np.mean(values)), float(np.std(values))
