"""Quaternion layers against explicit NumPy Hamilton-product loops (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax.layers import quaternion as qt
from tests import numpy_reference as ref


def _random_variables(module, x, rng):
    """Initialises ``module`` and replaces every parameter with N(0, 1) values."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), shapes)


CONV_CASES = [
        # kernel, strides, padding (layer), dilation
        ((3,), 1, 1, 1),
        ((3,), 2, "VALID", 1),
        ((2,), 1, "SAME", 2),
        ((3, 3), 1, "SAME", 1),
        ((3, 3), 2, 1, 1),
        ((3, 2), (1, 2), [(1, 0), (2, 1)], (2, 1)),
        ((4, 4), 2, 1, 1),
        ((2, 2, 2), 1, 0, 1),
        ((3, 1, 2), (2, 1, 1), (1, 0, 1), 1),
]


def _pads(padding, spatial, ksize, strides, dilation):
    nd = len(ksize)
    strides = (strides,) * nd if isinstance(strides, int) else strides
    dilation = (dilation,) * nd if isinstance(dilation, int) else dilation
    if padding == "VALID":
        pads = [(0, 0)] * nd
    elif padding == "SAME":
        pads = [ref.same_padding(h, k, s, d) for h, k, s, d in zip(spatial, ksize, strides, dilation)]
    elif isinstance(padding, int):
        pads = [(padding, padding)] * nd
    else:
        pads = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    return strides, pads, dilation


@pytest.mark.parametrize("ksize,strides,padding,dilation", CONV_CASES)
def test_quaternion_conv_matches_hamilton_loop(x64, rng, ksize, strides, padding, dilation):
    spatial = (7, 6, 5)[:len(ksize)]
    x = rng.normal(size=(2, *spatial, 8))
    layer = qt.QuaternionConv(12, ksize, strides=strides, padding=padding, kernel_dilation=dilation,
                 param_dtype=jnp.float64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(jax.jit(layer.apply)(variables, jnp.asarray(x)))
    w, b = (np.asarray(variables["params"][k]) for k in ("kernel", "bias"))
    s, pads, d = _pads(padding, spatial, ksize, strides, dilation)
    expected = ref.conv_loop(x, ksize, s, pads, d, ref.quaternion_tap(w), 12) + b
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


TRANSPOSE_CASES = [
        # kernel, strides, padding, output_padding, dilation
        ((4,), 2, 1, 0, 1),
        ((3,), 2, 1, 1, 1),
        ((4, 4), 2, 1, 0, 1),
        ((4, 4), 1, 0, 0, 1),
        ((3, 3), 2, 1, 1, 1),
        ((3, 3), 2, 0, 1, 2),
        ((5, 3), (3, 2), (2, 1), (1, 0), 1),
        ((2, 2, 2), 2, 0, 0, 1),
        ((1, 1), 1, 0, 0, 1),
]


@pytest.mark.parametrize("ksize,strides,padding,output_padding,dilation", TRANSPOSE_CASES)
def test_quaternion_conv_transpose_matches_conjugate_loop(x64, rng, ksize, strides, padding,
                             output_padding, dilation):
    nd = len(ksize)
    spatial = (4, 3, 3)[:nd]
    x = rng.normal(size=(2, *spatial, 8))
    layer = qt.QuaternionConvTranspose(12, ksize, strides=strides, padding=padding,
                                       output_padding=output_padding, kernel_dilation=dilation,
                                       param_dtype=jnp.float64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(jax.jit(layer.apply)(variables, jnp.asarray(x)))
    w, b = (np.asarray(variables["params"][k]) for k in ("kernel", "bias"))
    tup = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)
    expected = ref.conv_transpose_loop(x, ksize, tup(strides), tup(padding), tup(output_padding),
                                       tup(dilation), ref.quaternion_tap(w, conjugate=True), 12) + b
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ksize,strides,padding,dilation,size", [
        ((4, 4), 2, 1, 1, 8), ((3, 3), 2, 1, 1, 7), ((3,), 1, 1, 2, 6), ((2, 3, 2), (2, 1, 2), 0, 1, 5)])
def test_transpose_is_adjoint_of_conv(x64, rng, ksize, strides, padding, dilation, size):
    """<QConv_W(x), y> == <x, QConvT_W(y)> with the same components (docs/decisions.md#d2)."""
    nd = len(ksize)
    x = rng.normal(size=(2, *(size,) * nd, 8))
    conv = qt.QuaternionConv(12, ksize, strides=strides, padding=padding, kernel_dilation=dilation,
                             use_bias=False, param_dtype=jnp.float64)
    cvars = _random_variables(conv, jnp.asarray(x), rng)
    y_conv = np.asarray(conv.apply(cvars, jnp.asarray(x)))
    tup = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)
    # Output padding that restores the input size exactly.
    out_pad = [size - ((o - 1) * s - 2 * padding + d * (k - 1) + 1)
               for o, s, d, k in zip(y_conv.shape[1:-1], tup(strides), tup(dilation), ksize)]
    convt = qt.QuaternionConvTranspose(8, ksize, strides=strides, padding=padding,
                                       output_padding=out_pad, kernel_dilation=dilation,
                                       use_bias=False, param_dtype=jnp.float64)
    # The transposed layer maps 4O -> 4I: its kernel (4, *k, O, I) holds the same components.
    tvars = {"params": {"kernel": jnp.swapaxes(cvars["params"]["kernel"], -1, -2)}}
    y = rng.normal(size=y_conv.shape)
    x_back = np.asarray(convt.apply(tvars, jnp.asarray(y)))
    assert x_back.shape == x.shape
    np.testing.assert_allclose(np.vdot(y_conv, y), np.vdot(x, x_back), rtol=1e-11)


def test_quaternion_dense_matches_hamilton_product(x64, rng):
    x = rng.normal(size=(3, 5, 8))  # any rank: acts on the last axis
    layer = qt.QuaternionDense(12, param_dtype=jnp.float64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(layer.apply(variables, jnp.asarray(x)))
    w, b = (np.asarray(variables["params"][k]) for k in ("kernel", "bias"))
    wq = ref.components_to_quaternions(w)                      # (I, O, 4)
    xq = ref.to_quaternions(x)                                  # (3, 5, I, 4)
    expected = ref.from_quaternions(ref.qmul(wq, xq[..., :, None, :]).sum(axis=-3)) + b
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_hamilton_kernel_is_left_multiplication_matrix(x64, rng):
    """Each 4x4 block pattern of the assembled kernel equals L(w)^T (rows: input components)."""
    w = rng.normal(size=(4, 1, 1))
    K = np.asarray(qt.hamilton_kernel(jnp.asarray(w)))
    r, i, j, k = w[:, 0, 0]
    L = np.array([[r, -i, -j, -k], [i, r, -k, j], [j, k, r, -i], [k, -j, i, r]])
    np.testing.assert_array_equal(K, L.T)
    x = rng.normal(size=4)
    np.testing.assert_allclose(x @ K, ref.qmul(w[:, 0, 0], x), rtol=1e-14)


def test_hamilton_kernel_rejects_bad_shape():
    with pytest.raises(ValueError, match="hamilton_kernel"):
        qt.hamilton_kernel(jnp.zeros((3, 2, 2)))


@pytest.mark.parametrize("layer,in_ch,count", [
        (qt.QuaternionConv(64, (3, 3)), 128, 128 * 64 * 9 // 4 + 64),
        (qt.QuaternionConv(64, (3, 3), use_bias=False), 128, 128 * 64 * 9 // 4),
        (qt.QuaternionConvTranspose(512, (4, 4)), 128, 128 * 512 * 16 // 4 + 512),
        (qt.QuaternionConv(8, (3,)), 4, 4 * 8 * 3 // 4 + 8),
        (qt.QuaternionDense(16), 32, 32 * 16 // 4 + 16),
])
def test_parameter_counts(layer, in_ch, count):
    ndim = len(getattr(layer, "kernel_size", ()))
    x = jnp.zeros((1,) + (8,) * ndim + (in_ch,))
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes)) == count


@pytest.mark.parametrize("criterion", ["glorot", "he"])
def test_quaternion_init_moments(criterion):
    """E[r^2] = 2s^2, E[i^2] = E[j^2] = E[k^2] = 2s^2/3 (chi(4) modulus, uniform phase)."""
    shape = (4, 3, 3, 64, 96)
    init = jax.jit(qt.quaternion_initializer("quaternion", criterion), static_argnums=1)
    w = np.asarray(init(jax.random.key(1), shape))
    fan_in, fan_out = 9 * 64, 9 * 96
    s = 1 / np.sqrt(2 * (fan_in + fan_out)) if criterion == "glorot" else 1 / np.sqrt(2 * fan_in)
    second = (w ** 2).reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(second, [2 * s * s] + [2 * s * s / 3] * 3, rtol=0.04)


def test_transposed_init_uses_adjoint_fans():
    shape = (4, 4, 4, 32, 128)  # (4, k, k, I, O) of a 128 -> 512 transposed conv
    init = jax.jit(qt.quaternion_initializer("quaternion", "he", swap_fans=True), static_argnums=1)
    w = np.asarray(init(jax.random.key(2), shape))
    s = 1 / np.sqrt(2 * 16 * 128)  # fan_in = O * k * k
    np.testing.assert_allclose((w ** 2).sum(axis=0).mean(), 4 * s * s, rtol=0.03)


def test_other_inits():
    key, shape = jax.random.key(3), (4, 3, 3, 16, 16)
    make = lambda kind: jax.jit(qt.quaternion_initializer(kind), static_argnums=1)
    unit = np.asarray(make("unitary")(key, shape))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=0), 1.0, atol=2e-3)
    s = 1 / np.sqrt(2 * (9 * 16 + 9 * 16))
    rand = np.asarray(make("random")(key, shape))
    assert np.abs(rand).max() <= s and np.abs(rand).max() > 0.9 * s
    normal = np.asarray(make("normal")(key, shape))
    np.testing.assert_allclose(normal.std(), 0.02, rtol=0.05)
    with pytest.raises(ValueError, match="allowed"):
        qt.quaternion_initializer("xavier")


def test_rgb_quaternion_mapping():
    rgb = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, size=(2, 4, 4, 3)), jnp.float32)
    q = qt.rgb_to_quaternion(rgb)
    np.testing.assert_array_equal(q[..., 0], 0.0)
    np.testing.assert_array_equal(q[..., 1:], rgb)
    np.testing.assert_array_equal(qt.rgb_to_quaternion(rgb, mode="reference")[..., 0], -1.0)
    np.testing.assert_array_equal(qt.quaternion_to_rgb(q), rgb)
    with pytest.raises(ValueError, match="mode"):
        qt.rgb_to_quaternion(rgb, mode="one")
    with pytest.raises(ValueError, match="4 channels"):
        qt.quaternion_to_rgb(rgb)
