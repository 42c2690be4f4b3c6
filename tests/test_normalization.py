"""SpectralNorm (docs/decisions.md#d4) and QuaternionBatchNorm (#d5) against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax.layers import phc, real
from qgan_jax.layers import quaternion as qt
from qgan_jax.layers.normalization import QuaternionBatchNorm, SpectralNorm
from tests import numpy_reference as ref


def _torch_matrix(kernel):
    """(*k, in, out) direct kernel -> (out, in*prod(k)) in (in, *k) column order, by loops."""
    *ksize, cin, cout = kernel.shape
    flat = kernel.reshape(-1, cin, cout)                  # (taps, in, out), taps in C order
    m = np.zeros((cout, cin * flat.shape[0]))
    for c in range(cin):
        for t in range(flat.shape[0]):
            m[:, c * flat.shape[0] + t] = flat[t, c, :]
    return m


def _assembled(layer_params, kind):
    if kind == "quaternion_conv":
        return np.asarray(qt.hamilton_kernel(layer_params["kernel"]))
    if kind == "quaternion_transpose":
        return np.asarray(qt.hamilton_kernel(qt.conjugate(layer_params["kernel"])))
    if kind == "phc":
        return np.asarray(phc.phc_kernel(layer_params["A"], layer_params["F"]))
    return np.asarray(layer_params["kernel"])


LAYERS = [
        ("quaternion_conv", lambda: qt.QuaternionConv(8, (3, 3), padding=1, param_dtype=jnp.float64), (2, 5, 5, 8)),
        ("quaternion_transpose", lambda: qt.QuaternionConvTranspose(8, (4, 4), strides=2, padding=1,
                                param_dtype=jnp.float64), (2, 3, 3, 4)),
        ("phc", lambda: phc.PHConv(3, 6, (3, 3), param_dtype=jnp.float64), (2, 5, 5, 9)),
        ("real", lambda: real.Conv(5, (3, 3), param_dtype=jnp.float64), (2, 5, 5, 3)),
        ("real", lambda: real.Dense(7, param_dtype=jnp.float64), (4, 6)),
        ("quaternion_conv", lambda: qt.QuaternionDense(8, param_dtype=jnp.float64), (4, 8)),
]


@pytest.mark.parametrize("kind,make,shape", LAYERS)
def test_one_training_call_is_one_power_step(x64, rng, kind, make, shape):
    sn = SpectralNorm(make(), param_dtype=jnp.float64)
    x = jnp.asarray(rng.normal(size=shape))
    variables = sn.init(jax.random.key(0), x, update_stats=True)
    stats = variables["batch_stats"]
    matrix = _torch_matrix(_assembled(variables["params"]["layer"], kind))
    assert stats["u"].shape == (matrix.shape[0],) and stats["v"].shape == (matrix.shape[1],)
    apply = jax.jit(lambda v, x: sn.apply(v, x, update_stats=True, mutable=["batch_stats"]))
    y, new = apply(variables, x)
    u, v = ref.power_iteration_step(matrix, np.asarray(stats["u"]), np.asarray(stats["v"]))
    np.testing.assert_allclose(new["batch_stats"]["u"], u, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new["batch_stats"]["v"], v, rtol=1e-12, atol=1e-12)
    # The output equals the layer applied with its kernel divided by sigma = u^T M v.
    sigma = u @ matrix @ v
    plain = make().apply({"params": variables["params"]["layer"]}, x,
                         kernel_transform=lambda k: k / sigma)
    np.testing.assert_allclose(y, plain, rtol=1e-12, atol=1e-12)


def test_eval_calls_leave_state_unchanged(x64, rng):
    sn = SpectralNorm(qt.QuaternionConv(8, (3, 3), param_dtype=jnp.float64), param_dtype=jnp.float64)
    x = jnp.asarray(rng.normal(size=(2, 5, 5, 8)))
    variables = sn.init(jax.random.key(0), x, update_stats=True)
    y1, new = sn.apply(variables, x, update_stats=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, new["batch_stats"], variables["batch_stats"])
    y2 = sn.apply(variables, x, update_stats=False)
    np.testing.assert_array_equal(y1, y2)


def test_sigma_converges_to_largest_singular_value(x64, rng):
    layer = qt.QuaternionConv(8, (3, 3), param_dtype=jnp.float64)
    sn = SpectralNorm(layer, param_dtype=jnp.float64)
    x = jnp.asarray(rng.normal(size=(1, 4, 4, 8)))
    variables = sn.init(jax.random.key(0), x, update_stats=True)
    step = jax.jit(lambda v: sn.apply(v, x, update_stats=True, mutable=["batch_stats"])[1])
    stats = variables["batch_stats"]
    for _ in range(300):
        stats = step({"params": variables["params"], "batch_stats": stats})["batch_stats"]
    matrix = _torch_matrix(_assembled(variables["params"]["layer"], "quaternion_conv"))
    sigma = float(np.asarray(stats["u"]) @ matrix @ np.asarray(stats["v"]))
    np.testing.assert_allclose(sigma, np.linalg.svd(matrix, compute_uv=False)[0], rtol=1e-10)


def test_gradient_flows_through_kernel_not_u_v(x64, rng):
    sn = SpectralNorm(qt.QuaternionConv(8, (3, 3), param_dtype=jnp.float64), param_dtype=jnp.float64)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 8)))
    variables = sn.init(jax.random.key(0), x, update_stats=True)

    def loss(params, stats):
        y, _ = sn.apply({"params": params, "batch_stats": stats}, x, update_stats=True,
                mutable=["batch_stats"])
        return jnp.sum(y ** 2)

    g_params, g_stats = jax.grad(loss, argnums=(0, 1))(variables["params"], variables["batch_stats"])
    assert float(jnp.abs(g_params["layer"]["kernel"]).max()) > 0
    assert float(jnp.abs(g_stats["u"]).max()) == 0 and float(jnp.abs(g_stats["v"]).max()) == 0
    # Finite-difference check of one kernel entry with u, v fixed (eval mode): sigma's own
    # dependence on the kernel is part of the gradient.
    eval_loss = lambda p: jnp.sum(sn.apply({"params": p, "batch_stats": variables["batch_stats"]}, x,
                                           update_stats=False) ** 2)
    kernel = variables["params"]["layer"]["kernel"]
    bumped = lambda d: {"layer": {**variables["params"]["layer"],
                   "kernel": kernel.at[1, 0, 2, 1, 0].add(d)}}
    eps = 1e-6
    numeric = (eval_loss(bumped(eps)) - eval_loss(bumped(-eps))) / (2 * eps)
    analytic = jax.grad(eval_loss)(variables["params"])["layer"]["kernel"][1, 0, 2, 1, 0]
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_training_gradients_hold_u_v_fixed_to_second_order(x64, rng):
    # Train mode returns sigma from the power step and differentiates it as u'^T M v' with the new u', v'
    # fixed: first and second derivatives (the gradient penalty's double backward) must equal those of the
    # layer with its kernel divided by u'^T M v' written out.
    sn = SpectralNorm(real.Conv(5, (3, 3), param_dtype=jnp.float64), param_dtype=jnp.float64)
    x = jnp.asarray(rng.normal(size=(2, 5, 5, 3)))
    variables = sn.init(jax.random.key(0), x, update_stats=True)
    stats = variables["batch_stats"]
    matrix = _torch_matrix(_assembled(variables["params"]["layer"], "real"))
    u, v = ref.power_iteration_step(matrix, np.asarray(stats["u"]), np.asarray(stats["v"]))

    def trained(params, x):
        return sn.apply({"params": params, "batch_stats": stats}, x, update_stats=True,
                        mutable=["batch_stats"])[0]

    def written_out(params, x):
        def transform(k):
            sigma = jnp.asarray(u) @ (jnp.transpose(k, (3, 2, 0, 1)).reshape(k.shape[-1], -1) @ jnp.asarray(v))
            return k / sigma
        return real.Conv(5, (3, 3), param_dtype=jnp.float64).apply({"params": params["layer"]}, x,
                                                                    kernel_transform=transform)

    def penalty(fn):
        # A gradient-penalty-like objective: the parameters' gradient of a function of the input gradient.
        def objective(params):
            grad_x = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(params, x))))(x)
            return jnp.sum(grad_x ** 2) + jnp.sum(fn(params, x) ** 3)
        return jax.grad(objective)(variables["params"])

    np.testing.assert_allclose(trained(variables["params"], x), written_out(variables["params"], x), rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
                 penalty(trained), penalty(written_out))


def test_spectral_norm_rejects_foreign_layers():
    import flax.linen as nn
    with pytest.raises(TypeError, match="SpectralNorm"):
        SpectralNorm(nn.Dense(3)).init(jax.random.key(0), jnp.ones((1, 2)), update_stats=True)


def _qbn_reference(x, scale, bias, mean=None, var=None, eps=1e-5):
    q = x.shape[-1] // 4
    comps = [x[..., s * q:(s + 1) * q] for s in range(4)]
    if mean is None:
        mean = np.array([c.mean() for c in comps])
        var = np.mean(sum((c - m) ** 2 for c, m in zip(comps, mean)))
    out = [scale * (c - m) / np.sqrt(var + eps) + bias[s * q:(s + 1) * q]
           for s, (c, m) in enumerate(zip(comps, mean))]
    return np.concatenate(out, axis=-1), mean, var


def test_quaternion_batch_norm_train_and_eval(x64, rng):
    x = rng.normal(loc=0.5, scale=2.0, size=(3, 4, 5, 12))
    bn = QuaternionBatchNorm(param_dtype=jnp.float64)
    variables = bn.init(jax.random.key(0), jnp.asarray(x), use_running_average=False)
    assert variables["params"]["scale"].shape == (3,) and variables["params"]["bias"].shape == (12,)
    assert variables["batch_stats"]["mean"].shape == (4,) and variables["batch_stats"]["var"].shape == (1,)
    params = {"scale": jnp.asarray(rng.normal(size=3)), "bias": jnp.asarray(rng.normal(size=12))}
    stats = {"mean": jnp.asarray(rng.normal(size=4)), "var": jnp.asarray([1.7])}
    y, new = bn.apply({"params": params, "batch_stats": stats}, jnp.asarray(x),
             use_running_average=False, mutable=["batch_stats"])
    expected, mean, var = _qbn_reference(x, np.asarray(params["scale"]), np.asarray(params["bias"]))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new["batch_stats"]["mean"], 0.9 * np.asarray(stats["mean"]) + 0.1 * mean,
                               rtol=1e-12)
    np.testing.assert_allclose(new["batch_stats"]["var"], 0.9 * 1.7 + 0.1 * var, rtol=1e-12)
    y_eval, unchanged = bn.apply({"params": params, "batch_stats": stats}, jnp.asarray(x),
                                 use_running_average=True, mutable=["batch_stats"])
    expected_eval, _, _ = _qbn_reference(x, np.asarray(params["scale"]), np.asarray(params["bias"]),
                                         np.asarray(stats["mean"]), 1.7)
    np.testing.assert_allclose(y_eval, expected_eval, rtol=1e-12, atol=1e-12)
    jax.tree.map(np.testing.assert_array_equal, unchanged["batch_stats"], stats)


def test_quaternion_batch_norm_rejects_bad_channels():
    with pytest.raises(ValueError, match="channels = 6 is not divisible by 4"):
        QuaternionBatchNorm(use_running_average=False).init(jax.random.key(0), jnp.ones((2, 3, 3, 6)))


def test_quaternion_batch_norm_float32_statistics_far_from_zero(rng):
    # One-pass statistics are shifted per component, so a large offset costs no accuracy in float32.
    x = rng.normal(loc=np.repeat([2e3, -5e3, 0.0, 1e4], 3), scale=1.0, size=(8, 5, 5, 12))
    bn = QuaternionBatchNorm()
    variables = bn.init(jax.random.key(0), jnp.asarray(x, jnp.float32), use_running_average=False)
    y, state = bn.apply(variables, jnp.asarray(x, jnp.float32), use_running_average=False,
                        mutable=["batch_stats"])
    expected, mean, var = _qbn_reference(x, np.ones(3), np.zeros(12))
    np.testing.assert_allclose(state["batch_stats"]["mean"], 0.1 * mean, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(state["batch_stats"]["var"], [0.9 + 0.1 * var], rtol=1e-5)
    np.testing.assert_allclose(y, expected, atol=5e-3)
