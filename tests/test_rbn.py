"""Representative BatchNorm and the PyTorch-semantics BatchNorm against step-by-step NumPy formulas
(docs/decisions.md#d12)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax.layers.rbn import BatchNorm, RepresentativeBatchNorm

EPS, MOMENTUM = 1e-5, 0.1


def _np_bn_step(x, running_mean, running_var, train):
    """PyTorch BatchNorm2d without affine on NHWC: (standardised x, new running mean, new running var)."""
    if train:
        n = x.size // x.shape[-1]
        mean = x.mean(axis=(0, 1, 2))
        var = ((x - mean) ** 2).mean(axis=(0, 1, 2))                     # biased, for the output
        running_mean = (1 - MOMENTUM) * running_mean + MOMENTUM * mean
        running_var = (1 - MOMENTUM) * running_var + MOMENTUM * var * n / (n - 1)   # unbiased EMA
    else:
        mean, var = running_mean, running_var
    return (x - mean) / np.sqrt(var + EPS), running_mean, running_var


def _np_rbn_step(x, p, running_mean, running_var, train):
    """The official RBN forward, step by step (docs/decisions.md#gf-4)."""
    xc = x + p["center_weight"] * x.mean(axis=(1, 2), keepdims=True)        # 1. centering calibration
    xs, running_mean, running_var = _np_bn_step(xc, running_mean, running_var, train)   # 2. standardise
    r = 1.0 / (1.0 + np.exp(-(p["scale_weight"] * xs.mean(axis=(1, 2), keepdims=True)
                               + p["scale_bias"])))                        # 3. scaling calibration
    return p["scale"] * r * xs + p["bias"], running_mean, running_var      # 4. affine


def test_rbn_params_stats_and_init_values():
    x = jnp.zeros((2, 3, 3, 5))
    variables = RepresentativeBatchNorm(use_running_average=False).init(jax.random.key(0), x)
    params, stats = variables["params"], variables["batch_stats"]
    assert set(params) == {"scale", "bias", "center_weight", "scale_weight", "scale_bias"}
    assert set(stats) == {"mean", "var"}
    assert all(v.shape == (5,) for v in [*params.values(), *stats.values()])
    expected = {"scale": 1.0, "bias": 0.0, "center_weight": 0.0, "scale_weight": 0.0, "scale_bias": 1.0}
    for name, value in expected.items():
        np.testing.assert_array_equal(params[name], value)
    np.testing.assert_array_equal(stats["mean"], 0.0)
    np.testing.assert_array_equal(stats["var"], 1.0)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 2e-6)])
def test_rbn_train_steps_then_eval_against_numpy(x64, rng, dtype, tol):
    channels = 6
    module = RepresentativeBatchNorm()
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((2, 4, 4, channels)),
                                                use_running_average=False))
    params = {k: rng.normal(size=v.shape) for k, v in shapes["params"].items()}
    params["scale_bias"] += 1.0
    stats = {"mean": np.zeros(channels), "var": np.ones(channels)}
    running_mean, running_var = stats["mean"], stats["var"]
    variables = {"params": jax.tree.map(lambda a: jnp.asarray(a, dtype), params),
                 "batch_stats": jax.tree.map(lambda a: jnp.asarray(a, dtype), stats)}
    step = jax.jit(lambda v, x: module.apply(v, x, use_running_average=False, mutable=["batch_stats"]))
    for i in range(4):
        x = rng.normal(loc=i, scale=1.0 + i, size=(3, 5, 4, channels))
        y, new_stats = step(variables, jnp.asarray(x, dtype))
        expected, running_mean, running_var = _np_rbn_step(x, params, running_mean, running_var, True)
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
        np.testing.assert_allclose(new_stats["batch_stats"]["mean"], running_mean, rtol=tol, atol=tol)
        np.testing.assert_allclose(new_stats["batch_stats"]["var"], running_var, rtol=tol, atol=tol)
        variables = {"params": variables["params"], **new_stats}
    x = rng.normal(size=(2, 3, 3, channels))
    y, unchanged = module.apply(variables, jnp.asarray(x, dtype), use_running_average=True,
                                mutable=["batch_stats"])
    expected, _, _ = _np_rbn_step(x, params, running_mean, running_var, False)
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    jax.tree.map(np.testing.assert_array_equal, unchanged["batch_stats"], variables["batch_stats"])
    # Eval is instance-specific but never mixes batch items.
    y_single = module.apply(variables, jnp.asarray(x[:1], dtype), use_running_average=True)
    np.testing.assert_allclose(y_single, np.asarray(y)[:1], rtol=tol, atol=tol)


def test_rbn_at_init_is_sigmoid_one_times_batch_norm(rng):
    x = jnp.asarray(rng.normal(size=(4, 3, 5, 8)), jnp.float32)
    rbn = RepresentativeBatchNorm(use_running_average=False)
    bn = BatchNorm(use_running_average=False)
    y_rbn = rbn.apply(rbn.init(jax.random.key(0), x), x, mutable=["batch_stats"])[0]
    y_bn = bn.apply(bn.init(jax.random.key(0), x), x, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(y_rbn, 1.0 / (1.0 + np.exp(-1.0)) * np.asarray(y_bn), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-1.0)), 0.7311, atol=1e-4)


def test_batch_norm_against_numpy_with_unbiased_running_variance(x64, rng):
    module = BatchNorm(use_running_average=False)
    x = rng.normal(loc=2.0, scale=3.0, size=(2, 3, 4, 5))
    scale, bias = rng.normal(size=5), rng.normal(size=5)
    variables = {"params": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)},
                 "batch_stats": {"mean": jnp.zeros(5), "var": jnp.ones(5)}}
    y, state = module.apply(variables, jnp.asarray(x), mutable=["batch_stats"])
    xs, mean, var = _np_bn_step(x, np.zeros(5), np.ones(5), True)
    np.testing.assert_allclose(y, scale * xs + bias, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state["batch_stats"]["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(state["batch_stats"]["var"], var, rtol=1e-12)
    # The unbiased EMA differs from flax's biased one.
    n = x.size // 5
    biased = 0.9 + 0.1 * x.var(axis=(0, 1, 2))
    assert not np.allclose(state["batch_stats"]["var"], biased)
    np.testing.assert_allclose(state["batch_stats"]["var"], 0.9 + 0.1 * x.var(axis=(0, 1, 2)) * n / (n - 1))


def test_float32_batch_statistics_stay_accurate_far_from_zero(rng):
    # The one-pass variance (E[d^2] - E[d]^2) is shifted by a sample per channel; unshifted, float32 loses
    # about 0.1 % of the variance at mean 1000 / std 1, and all of it at mean 1e4.
    x = rng.normal(loc=np.array([1e3, -1e4, 0.0, 3e4]), scale=np.array([1.0, 0.5, 2.0, 1.0]), size=(8, 6, 6, 4))
    module = BatchNorm(use_running_average=False)
    variables = module.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
    y, state = module.apply(variables, jnp.asarray(x, jnp.float32), mutable=["batch_stats"])
    xs, mean, var = _np_bn_step(x, np.zeros(4), np.ones(4), True)
    np.testing.assert_allclose(state["batch_stats"]["var"], var, rtol=1e-4)
    np.testing.assert_allclose(y, xs, atol=5e-3)


def test_init_does_not_update_statistics(rng):
    x = jnp.asarray(rng.normal(loc=5.0, size=(2, 3, 3, 4)), jnp.float32)
    for module in (RepresentativeBatchNorm(use_running_average=False), BatchNorm(use_running_average=False)):
        stats = module.init(jax.random.key(0), x)["batch_stats"]
        np.testing.assert_array_equal(stats["mean"], 0.0)
        np.testing.assert_array_equal(stats["var"], 1.0)


def test_rbn_rejects_non_nhwc_input():
    with pytest.raises(ValueError, match=r"RepresentativeBatchNorm: expected NHWC input \(N, H, W, C\), "
                                         r"got shape \(2, 4\)"):
        RepresentativeBatchNorm(use_running_average=True).init(jax.random.key(0), jnp.zeros((2, 4)))
