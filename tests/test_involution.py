"""Involution, squeeze-and-excitation and GIU against naive NumPy loops over positions and taps
(docs/decisions.md#gf-1 to #gf-3)."""

import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from qgan_jax.layers.algebra import Algebra
from qgan_jax.layers.factory import LayerFactory
from qgan_jax.layers.involution import GIU, Involution, SqueezeExcite, apply_involution
from qgan_jax.layers.normalization import kernel_matrix

EPS = 1e-5


def _relu(x):
    return np.maximum(x, 0.0)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_involution(x, p, stats, k, s, gc, train):
    """Official involution semantics by loops over output positions and kernel taps (channels vectorised)."""
    n, h, w, c = x.shape
    xk = x if s == 1 else x.reshape(n, h // s, s, w // s, s, c).mean(axis=(2, 4))
    hr = xk @ p["reduce"]["kernel"][0, 0]
    if train:
        mean, var = hr.mean(axis=(0, 1, 2)), hr.var(axis=(0, 1, 2))
    else:
        mean, var = stats["mean"], stats["var"]
    hb = (hr - mean) / np.sqrt(var + EPS) * p["bn"]["scale"] + p["bn"]["bias"]
    hk = _relu(hb) @ p["span"]["kernel"][0, 0] + p["span"]["bias"]          # (N, Ho, Wo, G*K*K)
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    group = np.arange(c) // gc
    ho, wo = hk.shape[1:3]
    y = np.zeros((n, ho, wo, c))
    for u in range(ho):
        for v in range(wo):
            for i in range(k):
                for j in range(k):
                    y[:, u, v, :] += hk[:, u, v, group * k * k + i * k + j] * xp[:, s * u + i, s * v + j, :]
    return y


def _np_se(x, p):
    z = x.mean(axis=(1, 2))
    a = _sigmoid(_relu(z @ p["fc1"]["kernel"] + p["fc1"]["bias"]) @ p["fc2"]["kernel"] + p["fc2"]["bias"])
    return x * a[:, None, None, :]


def _random_variables(module, x, rng, dtype, train=False):
    """eval_shape + NumPy fills: params N(0, 0.5^2), BN scale around 1, running variance positive."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.asarray(x), train=train))
    params = jax.tree.map(lambda a: rng.normal(scale=0.5, size=a.shape), shapes["params"])
    stats = jax.tree.map(lambda a: rng.uniform(0.5, 1.5, size=a.shape), shapes["batch_stats"])
    to_jax = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)  # noqa: E731
    return params, stats, {"params": to_jax(params), "batch_stats": to_jax(stats)}


@pytest.mark.parametrize("k,s,r", [(3, 1, 4), (7, 1, 4), (3, 2, 4), (3, 1, 16), (5, 2, 4)])
@pytest.mark.parametrize("train", [True, False])
def test_involution_matches_numpy_loops(x64, rng, k, s, r, train):
    x = rng.normal(size=(2, 8, 6, 32))
    module = Involution(k, s, group_channels=16, reduction=r)
    params, stats, variables = _random_variables(module, x, rng, jnp.float64)
    y, new_state = module.apply(variables, jnp.asarray(x), train=train, mutable=["batch_stats"])
    expected = _np_involution(x, params, stats["bn"], k, s, 16, train)
    assert y.shape == (2, 8 // s, 6 // s, 32)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
    if not train:
        jax.tree.map(np.testing.assert_array_equal, new_state["batch_stats"], variables["batch_stats"])


def test_involution_float32_within_5e_6(rng):
    x = rng.normal(size=(2, 6, 6, 32))
    module = Involution(3, 1)
    params, stats, variables = _random_variables(module, x, rng, jnp.float32)
    params = jax.tree.map(lambda a: np.asarray(a, np.float32).astype(np.float64), variables["params"])
    y = module.apply(variables, jnp.asarray(x, jnp.float32), train=False)
    expected = _np_involution(x.astype(np.float32).astype(np.float64), params, stats["bn"], 3, 1, 16, False)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(y, expected, rtol=0, atol=5e-6 * max(scale, 1.0))


def test_involution_running_statistics_update_is_pytorch(x64, rng):
    x = rng.normal(size=(3, 4, 4, 16))
    module = Involution(3, 1, group_channels=16, reduction=4)
    params, stats, variables = _random_variables(module, x, rng, jnp.float64)
    _, state = module.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    hr = x @ params["reduce"]["kernel"][0, 0]
    n = hr.size // hr.shape[-1]
    np.testing.assert_allclose(state["batch_stats"]["bn"]["mean"],
                               0.9 * stats["bn"]["mean"] + 0.1 * hr.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(state["batch_stats"]["bn"]["var"],
                               0.9 * stats["bn"]["var"] + 0.1 * hr.var(axis=(0, 1, 2)) * n / (n - 1),
                               rtol=1e-12)


@pytest.mark.parametrize("k,s,order", [(3, 1, 2), (3, 2, 2), (5, 1, 1)])
def test_apply_involution_matches_patch_reference_and_its_gradients(x64, rng, k, s, order):
    """The shifted-slice multiply-add equals a patch-tensor reference, and its derivatives (second order: the
    gradient penalty differentiates it twice) pass finite-difference checks."""
    n, h, c, gc = 2, 6, 8, 4
    x = jnp.asarray(rng.normal(size=(n, h, h, c)))
    kernel = jnp.asarray(rng.normal(size=(n, h // s, h // s, c // gc, k * k)))
    pad = (k - 1) // 2
    patches = lax.conv_general_dilated_patches(x, (k, k), (s, s), [(pad, pad), (pad, pad)],
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                               precision=lax.Precision.HIGHEST)  # features c*K*K + tap
    patches = patches.reshape(n, h // s, h // s, c // gc, gc, k * k)
    expected = jnp.sum(patches * kernel[:, :, :, :, None, :], axis=-1).reshape(n, h // s, h // s, c)
    np.testing.assert_allclose(apply_involution(x, kernel, k, s, gc), expected, rtol=1e-12, atol=1e-12)
    involve = jax.jit(lambda a, b: apply_involution(a, b, k, s, gc))
    jax.test_util.check_grads(involve, (x[:1], kernel[:1]), order=order, modes=("rev",), eps=1e-4)


@pytest.mark.parametrize("s", [1, 2])
def test_constant_kernel_is_a_depthwise_shared_convolution(x64, rng, s):
    k, gc, c = 3, 4, 12
    x = rng.normal(size=(2, 6, 6, c))
    module = Involution(k, s, group_channels=gc, reduction=4)
    params, stats, variables = _random_variables(module, x, rng, jnp.float64)
    taps = rng.normal(size=(c // gc) * k * k)
    variables["params"]["span"] = {"kernel": jnp.zeros_like(variables["params"]["span"]["kernel"]),
                                   "bias": jnp.asarray(taps)}
    y = module.apply(variables, jnp.asarray(x), train=False)
    # Channel c uses group c // gc's kernel at every position: a depthwise conv with kernels shared per group.
    depthwise = taps.reshape(c // gc, k, k)[np.arange(c) // gc]            # (C, K, K)
    expected = lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(depthwise.transpose(1, 2, 0)[:, :, None, :]),
                                        (s, s), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=c)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


def test_involution_contract_shapes_and_names():
    c, r, k = 64, 4, 3
    module = Involution(kernel_size=k, stride=1, group_channels=16, reduction=r)
    v = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((2, 4, 4, c)), train=False))
    shapes = jax.tree.map(lambda a: a.shape, v)
    assert shapes["params"] == {"reduce": {"kernel": (1, 1, c, c // r)},
                                "bn": {"scale": (c // r,), "bias": (c // r,)},
                                "span": {"kernel": (1, 1, c // r, (c // 16) * k * k), "bias": ((c // 16) * k * k,)}}
    assert shapes["batch_stats"] == {"bn": {"mean": (c // r,), "var": (c // r,)}}
    # C*C_r + 2*C_r + C_r*G*K^2 + G*K^2 (docs/decisions.md#gf-1-5).
    count = sum(int(np.prod(s)) for s in jax.tree.leaves(shapes["params"], is_leaf=lambda t: isinstance(t, tuple)))
    assert count == c * (c // r) + 2 * (c // r) + (c // r) * 4 * 9 + 4 * 9


def test_involution_with_spectral_norm_divides_the_1x1_kernels_by_sigma(x64, rng):
    x = rng.normal(size=(2, 4, 4, 32))
    plain = Involution(3, 1)
    sn = Involution(3, 1, spectral_norm=True)
    shapes = jax.eval_shape(lambda: sn.init(jax.random.key(0), jnp.asarray(x), train=False))
    assert set(shapes["params"]["reduce"]) == {"layer"} and set(shapes["batch_stats"]["span"]) == {"u", "v"}
    variables = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, size=a.shape)), shapes)
    y, state = sn.apply(variables, jnp.asarray(x), train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], variables["batch_stats"])
    plain_params = {"bn": variables["params"]["bn"]}
    for name in ("reduce", "span"):
        layer = dict(variables["params"][name]["layer"])
        u, v = variables["batch_stats"][name]["u"], variables["batch_stats"][name]["v"]
        sigma = u @ (np.asarray(kernel_matrix(layer["kernel"])) @ v)
        layer["kernel"] = layer["kernel"] / sigma
        plain_params[name] = layer
    expected = plain.apply({"params": plain_params, "batch_stats": {"bn": variables["batch_stats"]["bn"]}},
                           jnp.asarray(x), train=False)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
    _, state = sn.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    assert not np.array_equal(state["batch_stats"]["reduce"]["u"], variables["batch_stats"]["reduce"]["u"])


def test_squeeze_excite_matches_numpy(x64, rng):
    x = rng.normal(size=(3, 5, 4, 64))
    module = SqueezeExcite(reduction=16)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.asarray(x)))
    assert jax.tree.map(lambda a: a.shape, shapes["params"]) == {
        "fc1": {"kernel": (64, 4), "bias": (4,)}, "fc2": {"kernel": (4, 64), "bias": (64,)}}
    params = jax.tree.map(lambda a: rng.normal(size=a.shape), shapes["params"])
    y = module.apply({"params": jax.tree.map(jnp.asarray, params)}, jnp.asarray(x), train=True)
    np.testing.assert_allclose(y, _np_se(x, params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("r", [4, 16])
@pytest.mark.parametrize("train", [True, False])
def test_giu_is_involution_of_the_se_output(x64, rng, r, train):
    x = rng.normal(size=(2, 6, 6, 64))
    module = GIU(kernel_size=3, group_channels=16, reduction=r, se_reduction=16)
    params, stats, variables = _random_variables(module, x, rng, jnp.float64)
    assert set(params) == {"se", "involution"}
    y = module.apply(variables, jnp.asarray(x), train=train, mutable=["batch_stats"])[0]
    expected = _np_involution(_np_se(x, params["se"]), params["involution"], stats["involution"]["bn"],
                              3, 1, 16, train)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


def test_giu_parameter_count_at_256_channels():
    v = jax.eval_shape(lambda: GIU().init(jax.random.key(0), jnp.zeros((1, 4, 4, 256)), train=False))
    counts = {k: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(t)) for k, t in v["params"].items()}
    assert counts == {"se": 8_464, "involution": 25_872}           # docs/decisions.md#gf-6-1: 34,336


@pytest.mark.parametrize("algebra,phc_n", [("quaternion", None), ("phc", 4)])
def test_giu_with_hypercomplex_1x1_layers_runs(rng, algebra, phc_n):
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 64)), jnp.float32)
    module = GIU(layers=LayerFactory(Algebra(algebra, phc_n), init="default"), spectral_norm=True)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
    assert shapes["params"]["involution"]["span"]["layer"]["bias"].shape == (36,)
    variables = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.1, 0.5, size=a.shape), a.dtype), shapes)
    y, state = module.apply(variables, x, train=True, mutable=["batch_stats"])
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))
    assert not np.array_equal(state["batch_stats"]["se"]["fc1"]["u"], variables["batch_stats"]["se"]["fc1"]["u"])


@pytest.mark.parametrize("module,shape,message", [
    (Involution(4), (1, 4, 4, 16), "kernel_size must be odd, got 4"),
    (Involution(3, group_channels=16), (1, 4, 4, 24), "channels = 24 is not divisible by 16"),
    (Involution(3, 2), (1, 5, 4, 16), "divisible by 2, got 5x4"),
    (Involution(3, reduction=0), (1, 4, 4, 16), "reduction must be a positive int, got 0"),
    (SqueezeExcite(16), (1, 4, 4, 24), "channels = 24 is not divisible by 16"),
])
def test_clear_errors(module, shape, message):
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False))
