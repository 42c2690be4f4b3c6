"""Precision / recall (Kynkäänniemi et al., 2019) and density / coverage (Naeem et al., 2020) from feature arrays.

Each real feature r_i gets a ball B(r_i, ρ_i) whose radius ρ_i is the distance to its k-th nearest other real
feature (likewise for fakes, for recall). With N reals and M fakes:

  precision = (1/M) Σ_j 1[∃ i: |f_j − r_i| < ρ_i]            recall   = (1/N) Σ_i 1[∃ j: |r_i − f_j| < ρ'_j]
  density   = (1/(kM)) Σ_j Σ_i 1[|f_j − r_i| < ρ_i]          coverage = (1/N) Σ_i 1[∃ j: |f_j − r_i| < ρ_i]

with ρ'_j the k-NN radius of f_j among the fakes. Strict inequalities, as Naeem et al.'s reference code. Distances
are computed in row chunks (float64 squared distances), so 10k x 10k sets need no N x M matrix in memory.
"""

from __future__ import annotations

import numpy as np

__all__ = ["knn_radii", "precision_recall_density_coverage"]

K = 3
_CHUNK = 1024


def _squared_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    """(n, d), (m, d) -> (n, m) squared Euclidean distances, clipped at 0."""
    return np.maximum((a * a).sum(1)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def knn_radii(x: np.ndarray, k: int = K) -> np.ndarray:
    """(n,) squared distance of every row of x to its k-th nearest other row."""
    if not 1 <= k < len(x):
        raise ValueError(f"k={k} needs more than k rows, got {len(x)}")
    x_sq = (x * x).sum(1)
    radii = np.empty(len(x))
    for start in range(0, len(x), _CHUNK):
        d = _squared_distances(x[start:start + _CHUNK], x, x_sq)
        # Index k of the sorted row: index 0 is the row itself (distance 0).
        radii[start:start + _CHUNK] = np.partition(d, k, axis=1)[:, k]
    return radii


def precision_recall_density_coverage(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    """{'precision', 'recall', 'density', 'coverage'} of fake (M, d) features against real (N, d) features."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"PRDC needs two (n, d) feature arrays of equal d, got {real.shape} and {fake.shape}")
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    real_sq = (real * real).sum(1)
    inside_real = 0        # fakes inside some real ball (precision)
    real_ball_hits = 0     # (fake, real ball) pairs (density)
    covered = np.zeros(len(real), bool)
    for start in range(0, len(fake), _CHUNK):
        d = _squared_distances(fake[start:start + _CHUNK], real, real_sq)   # (chunk, N)
        hits = d < real_radii[None, :]
        inside_real += int(hits.any(axis=1).sum())
        real_ball_hits += int(hits.sum())
        covered |= hits.any(axis=0)
    fake_sq = (fake * fake).sum(1)
    recalled = 0
    for start in range(0, len(real), _CHUNK):
        d = _squared_distances(real[start:start + _CHUNK], fake, fake_sq)   # (chunk, M)
        recalled += int((d < fake_radii[None, :]).any(axis=1).sum())
    return {
        "precision": inside_real / len(fake),
        "recall": recalled / len(real),
        "density": real_ball_hits / (k * len(fake)),
        "coverage": float(covered.mean()),
    }
