"""KID and precision / recall / density / coverage against references written from the papers' formulas."""

import numpy as np
import pytest
import scipy.spatial.distance

from qgan_jax.metrics import kid, prdc


def _kid_reference(x, y):
    """Unbiased MMD² with k(a, b) = (aᵀb / d + 1)³ as double sums over index pairs (Bińkowski et al., eq. 3)."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd2_unbiased_matches_double_sums():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.0, size=(12, 5))
    got = kid.mmd2_unbiased(kid.polynomial_kernel(x, x), kid.polynomial_kernel(x, y), kid.polynomial_kernel(y, y))
    assert got == pytest.approx(_kid_reference(x, y), rel=1e-12)


def test_kid_subsets_follow_torch_fidelity_sampling():
    """Each subset draws fake rows, then real rows, from one RandomState(seed) without replacement."""
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(30, 4)), rng.normal(0.3, 1.0, size=(25, 4))
    mean, std = kid.kernel_inception_distance(real, fake, subsets=3, subset_size=10, seed=7)
    draw = np.random.RandomState(7)
    values = []
    for _ in range(3):
        f = fake[draw.choice(25, 10, replace=False)]
        r = real[draw.choice(30, 10, replace=False)]
        values.append(_kid_reference(f, r))
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert std == pytest.approx(np.std(values), rel=1e-10)


def test_kid_limits():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 8))
    same, _ = kid.kernel_inception_distance(real, rng.normal(size=(400, 8)), subsets=20, subset_size=200)
    shifted, _ = kid.kernel_inception_distance(real, rng.normal(3.0, 1.0, size=(400, 8)), subsets=20,
                                               subset_size=200)
    assert abs(same) < 0.02           # Unbiased: centred on 0 for one distribution (can be negative).
    assert shifted > 1.0


def test_kid_rejects_mismatched_features():
    with pytest.raises(ValueError, match="equal d"):
        kid.kernel_inception_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def _prdc_reference(real, fake, k):
    """Brute force over full distance matrices (Kynkäänniemi et al. 2019 §3; Naeem et al. 2020 eqs. 3-4)."""
    rr = scipy.spatial.distance.cdist(real, real)
    ff = scipy.spatial.distance.cdist(fake, fake)
    rf = scipy.spatial.distance.cdist(real, fake)
    real_radius = np.sort(rr, axis=1)[:, k]
    fake_radius = np.sort(ff, axis=1)[:, k]
    precision = np.mean([any(rf[i, j] < real_radius[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(rf[i, j] < fake_radius[j] for j in range(len(fake))) for i in range(len(real))])
    density = sum(rf[i, j] < real_radius[i] for i in range(len(real)) for j in range(len(fake))) / (k * len(fake))
    coverage = np.mean([rf[i].min() < real_radius[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_brute_force(k, monkeypatch):
    monkeypatch.setattr(prdc, "_CHUNK", 7)  # Several chunks, one of them partial.
    rng = np.random.default_rng(3)
    real = rng.normal(size=(40, 6))
    fake = np.concatenate([rng.normal(size=(20, 6)), rng.normal(2.5, 0.5, size=(15, 6))])
    got = prdc.precision_recall_density_coverage(real, fake, k)
    want = _prdc_reference(real, fake, k)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_prdc_limits():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 5))
    identical = prdc.precision_recall_density_coverage(real, real.copy())
    assert identical == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})
    disjoint = prdc.precision_recall_density_coverage(real, real + 100.0)
    assert disjoint == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # Mode collapse: fakes on a few real points have full precision but low recall and coverage.
    collapsed = prdc.precision_recall_density_coverage(real, np.repeat(real[:5], 60, axis=0))
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05
