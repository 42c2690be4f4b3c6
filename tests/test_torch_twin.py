"""bench/torch_twin.py: the PyTorch twin computes the reference's layers (skipped where torch is absent)."""


import numpy as np
import pytest

from tests import bench_modules

torch = pytest.importorskip("torch")

from qgan_jax.layers import quaternion  # noqa: E402



def _twin():
    return bench_modules.load("torch_twin")


def test_hamilton_kernel_matches_the_jax_layer():
    twin = _twin()
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 5, 2))  # (4, kh, kw, I, O)
    ours = np.asarray(quaternion.hamilton_kernel(w))           # (kh, kw, 4I, 4O)
    components = [torch.from_numpy(c.transpose(3, 2, 0, 1).copy()) for c in w]   # (O, I, kh, kw)
    theirs = twin.hamilton_kernel(*components).numpy()                           # (4O, 4I, kh, kw)
    np.testing.assert_allclose(theirs.transpose(2, 3, 1, 0), ours, atol=1e-12)


def test_quaternion_spectral_norm_converges_to_the_largest_singular_value():
    twin = _twin()
    torch.manual_seed(0)
    conv = twin.QConv(8, 8, 3, 1, spectral=True)
    x = torch.randn(2, 8, 5, 5)
    for _ in range(200):
        conv(x)
    matrix = twin.hamilton_kernel(conv.r, conv.i, conv.j, conv.k).reshape(8, -1).detach()
    sigma = float(conv.u @ matrix @ conv.v)
    assert sigma == pytest.approx(float(torch.linalg.matrix_norm(matrix, ord=2)), rel=1e-4)


def test_quaternion_batch_norm_pools_one_variance_over_the_components():
    twin = _twin()
    layer = twin.QBatchNorm(8)
    x = torch.randn(6, 8, 3, 3) * 3 + 1
    y = layer(x).detach().numpy()
    parts = x.numpy().reshape(6, 4, 2, 3, 3)
    centred = parts - parts.mean(axis=(0, 2, 3, 4), keepdims=True)
    variance = (centred ** 2).sum(axis=1).mean()
    np.testing.assert_allclose(y, (centred / np.sqrt(variance + 1e-5)).reshape(6, 8, 3, 3), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["qsngan32", "sngan32"])
def test_models_have_the_reference_parameter_counts(model):
    twin = _twin()
    generator, discriminator = twin.build(model, torch.device("cpu"))  # build() asserts the counts.
    assert sum(p.numel() for p in generator.parameters()) == twin.REFERENCE_PARAMS[model][0]


@pytest.mark.slow
def test_one_iteration_updates_both_networks():
    twin = _twin()
    row = twin.bench_model("qsngan32", 2, torch.device("cpu"), compiled=False, min_seconds=0.0, sample_batch=2)
    assert row["ms_per_iter"] > 0 and row["sample_images_per_sec"] > 0
