"""PHC / PHM layers against explicit NumPy Kronecker sums (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax.layers import phc
from qgan_jax.layers import quaternion as qt
from tests import numpy_reference as ref
from tests.test_quaternion import _random_variables


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_phc_kernel_is_kronecker_sum(x64, rng, n):
    A = rng.normal(size=(n, n, n))
    F = rng.normal(size=(n, 2, 3, 2, 3))  # (n, kh, kw, I', O')
    K = np.asarray(phc.phc_kernel(jnp.asarray(A), jnp.asarray(F)))
    assert K.shape == (2, 3, 2 * n, 3 * n)
    for y in range(2):
        for x in range(3):
            np.testing.assert_allclose(K[y, x], ref.kron_sum_matrix(A, F[:, y, x]).T, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n,ksize,strides,padding,dilation", [
        (2, (3,), 1, 1, 1),
        (3, (3, 3), 2, 1, 1),
        (4, (3, 2), 1, [(1, 0), (0, 1)], (2, 1)),
        (5, (2, 2, 2), 1, 0, 1),
])
def test_phconv_matches_kronecker_loop(x64, rng, n, ksize, strides, padding, dilation):
    spatial = (6, 5, 4)[:len(ksize)]
    x = rng.normal(size=(2, *spatial, 2 * n))
    layer = phc.PHConv(n, 3 * n, ksize, strides=strides, padding=padding, kernel_dilation=dilation,
                       param_dtype=jnp.float64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(jax.jit(layer.apply)(variables, jnp.asarray(x)))
    p = {k: np.asarray(v) for k, v in variables["params"].items()}
    nd = len(ksize)
    tup = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)
    pads = [(padding, padding)] * nd if isinstance(padding, int) else [tuple(q) for q in padding]
    expected = ref.conv_loop(x, ksize, tup(strides), pads, tup(dilation),
                             ref.phc_tap(p["A"], p["F"]), 3 * n) + p["bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,ksize,strides,padding,output_padding", [
        (2, (4, 4), 2, 1, 0), (3, (3, 3), 2, 1, 1), (4, (3,), 1, 0, 0)])
def test_phconv_transpose_matches_kronecker_scatter(x64, rng, n, ksize, strides, padding,
                          output_padding):
    nd = len(ksize)
    x = rng.normal(size=(2, *(4,) * nd, 2 * n))
    layer = phc.PHConvTranspose(n, 3 * n, ksize, strides=strides, padding=padding,
                  output_padding=output_padding, param_dtype=jnp.float64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(layer.apply(variables, jnp.asarray(x)))
    p = {k: np.asarray(v) for k, v in variables["params"].items()}
    expected = ref.conv_transpose_loop(x, ksize, (strides,) * nd, (padding,) * nd,
                                       (output_padding,) * nd, (1,) * nd,
                                       ref.phc_tap(p["A"], p["F"]), 3 * n) + p["bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_phdense_matches_kronecker_sum(x64, rng, n):
    x = rng.normal(size=(3, 2, 3 * n))
    layer = phc.PHDense(n, 2 * n, param_dtype=jnp.float64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(layer.apply(variables, jnp.asarray(x)))
    p = {k: np.asarray(v) for k, v in variables["params"].items()}
    w_torch = ref.kron_sum_matrix(p["A"], p["F"])  # (out, in)
    np.testing.assert_allclose(y, x @ w_torch.T + p["bias"], rtol=1e-12, atol=1e-12)


def test_phc_n4_with_hamilton_matrices_is_quaternion_conv(x64, rng):
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 8)))
    qconv = qt.QuaternionConv(12, (3, 3), strides=2, padding=1, param_dtype=jnp.float64)
    qvars = _random_variables(qconv, x, rng)
    pconv = phc.PHConv(4, 12, (3, 3), strides=2, padding=1, param_dtype=jnp.float64)
    pvars = {"params": {"A": jnp.asarray(qt.HAMILTON_MATRICES, jnp.float64),
              "F": qvars["params"]["kernel"], "bias": qvars["params"]["bias"]}}
    np.testing.assert_allclose(pconv.apply(pvars, x), qconv.apply(qvars, x), rtol=1e-14, atol=1e-14)


def test_phdense_n4_with_hamilton_matrices_is_quaternion_dense(x64, rng):
    x = jnp.asarray(rng.normal(size=(5, 8)))
    qd = qt.QuaternionDense(16, param_dtype=jnp.float64)
    qvars = _random_variables(qd, x, rng)
    pvars = {"params": {"A": jnp.asarray(qt.HAMILTON_MATRICES, jnp.float64),
              "F": qvars["params"]["kernel"], "bias": qvars["params"]["bias"]}}
    np.testing.assert_allclose(phc.PHDense(4, 16).apply(pvars, x), qd.apply(qvars, x), rtol=1e-14)


@pytest.mark.parametrize("layer,in_ch,count", [
        (phc.PHConv(4, 64, (3, 3)), 128, 4 ** 3 + 128 * 64 * 9 // 4 + 64),
        (phc.PHConv(3, 48, (3, 3)), 3, 3 ** 3 + 3 * 48 * 9 // 3 + 48),
        (phc.PHConvTranspose(2, 8, (4, 4)), 6, 2 ** 3 + 6 * 8 * 16 // 2 + 8),
        (phc.PHDense(5, 10), 15, 5 ** 3 + 15 * 10 // 5 + 10),
])
def test_phc_parameter_counts(layer, in_ch, count):
    ndim = len(getattr(layer, "kernel_size", ()))
    x = jnp.zeros((1,) + (8,) * ndim + (in_ch,))
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes)) == count


def test_phc_init_follows_reference_fans():
    n, k, i_in, o_out = 4, 3, 32, 16
    layer = phc.PHConv(n, n * o_out, (k, k))
    params = jax.jit(layer.init)(jax.random.key(0), jnp.zeros((1, 5, 5, n * i_in)))["params"]
    bound_a, bound_f = np.sqrt(3) / n, np.sqrt(6 / (o_out * i_in * k * k + n * i_in * k * k))
    for name, bound in (("A", bound_a), ("F", bound_f), ("bias", 1 / np.sqrt(n * i_in))):
        a = np.abs(np.asarray(params[name]))
        assert a.max() <= bound and a.max() > 0.8 * bound, name
