"""Behaviour shared by every layer: clear errors, jit / grad in float32 and float64, the algebra switch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax.layers import algebra, phc, real
from qgan_jax.layers import quaternion as qt
from qgan_jax.layers.normalization import SpectralNorm


@pytest.mark.parametrize("layer,shape,match", [
        (qt.QuaternionConv(8, (3, 3)), (1, 5, 5, 6), r"QuaternionConv: input channels = 6 is not divisible by 4"),
        (qt.QuaternionConv(6, (3, 3)), (1, 5, 5, 8), r"QuaternionConv: features = 6 is not divisible by 4"),
        (qt.QuaternionConvTranspose(8, (3, 3)), (1, 5, 5, 3), r"QuaternionConvTranspose: input channels = 3 .* by 4"),
        (qt.QuaternionDense(8), (2, 10), r"QuaternionDense: input features = 10 is not divisible by 4"),
        (phc.PHConv(3, 6, (3, 3)), (1, 5, 5, 4), r"PHConv: input channels = 4 is not divisible by 3"),
        (phc.PHConv(3, 8, (3, 3)), (1, 5, 5, 6), r"PHConv: features = 8 is not divisible by 3"),
        (phc.PHDense(5, 10), (2, 12), r"PHDense: input features = 12 is not divisible by 5"),
        (phc.PHConvTranspose(2, 3, (3, 3)), (1, 5, 5, 4), r"PHConvTranspose: features = 3 is not divisible by 2"),
        (qt.QuaternionConv(8, (3, 3)), (5, 5, 8), r"QuaternionConv: a 2-D kernel needs input of rank 4"),
        (phc.PHConv(2, 8, (3,)), (1, 5, 5, 8), r"PHConv: a 1-D kernel needs input of rank 3"),
        (qt.QuaternionConvTranspose(8, (4, 4), strides=2, output_padding=2), (1, 3, 3, 8), r"output_padding"),
        (qt.QuaternionConvTranspose(8, (4, 4), padding="VALID"), (1, 3, 3, 8), r"PyTorch meaning"),
        (qt.QuaternionConv(8, (3, 3), padding="FULL"), (1, 5, 5, 8), r"padding must be"),
        (qt.QuaternionConv(8, (3, 3), strides=(1, 2, 3)), (1, 5, 5, 8), r"strides must be"),
        (phc.PHConv(0, 8, (3, 3)), (1, 5, 5, 8), r"n must be a positive int"),
])
def test_bad_inputs_raise_clear_value_errors(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer.init(jax.random.key(0), jnp.zeros(shape))


def test_named_layer_appears_in_error():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return qt.QuaternionConv(8, (3, 3), name="stem")(x)

    with pytest.raises(ValueError, match="QuaternionConv 'stem': input channels = 3"):
        Net().init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


MAKERS = [
        lambda dt: qt.QuaternionConv(8, (3, 3), strides=2, param_dtype=dt),
        lambda dt: qt.QuaternionConvTranspose(8, (4, 4), strides=2, padding=1, param_dtype=dt),
        lambda dt: phc.PHConv(2, 8, (3, 3), param_dtype=dt),
        lambda dt: phc.PHConvTranspose(4, 8, (4, 4), strides=2, padding=1, param_dtype=dt),
        lambda dt: SpectralNorm(qt.QuaternionConv(8, (3, 3), param_dtype=dt), param_dtype=dt),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", MAKERS)
def test_jit_and_grad(dtype, make):
    with jax.enable_x64(dtype == "float64"):
        dt = jnp.dtype(dtype)
        layer = make(dt)
        x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 8)), dt)
        kwargs = {"update_stats": True} if isinstance(layer, SpectralNorm) else {}
        variables = layer.init(jax.random.key(0), x, **kwargs)
        params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

        @jax.jit
        def loss(params, x):
            y = layer.apply({"params": params, **state}, x, **kwargs, mutable=list(state))[0] if state \
                    else layer.apply({"params": params}, x)
            return jnp.mean(y ** 2)

        value, grads = jax.value_and_grad(loss)(params, x)
        assert value.dtype == dt and np.isfinite(float(value))
        for g in jax.tree.leaves(grads):
            assert g.dtype == dt and np.all(np.isfinite(np.asarray(g)))
        assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name,n,cls", [
        ("real", None, (real.Conv, real.ConvTranspose, real.Dense)),
        ("quaternion", None, (qt.QuaternionConv, qt.QuaternionConvTranspose, qt.QuaternionDense)),
        ("phc", 3, (phc.PHConv, phc.PHConvTranspose, phc.PHDense)),
])
def test_algebra_switch(name, n, cls):
    value = algebra.Algebra(name, n)
    layers = (value.conv(12, (3, 3), padding=1, init_criterion="he"),
              value.conv_transpose(12, (4, 4), strides=2, padding=1),
              value.dense(12))
    for layer, expected in zip(layers, cls):
        assert type(layer) is expected
    assert value.multiple == {"real": 1, "quaternion": 4, "phc": 3}[name]


def test_algebra_switch_errors():
    with pytest.raises(ValueError, match="allowed: real, quaternion, phc"):
        algebra.Algebra("octonion").conv(8, (3, 3))
    with pytest.raises(ValueError, match="phc_n"):
        algebra.Algebra("phc").dense(8)


def test_phc8_is_one_algebra_value_away(rng):
    """A new algebra needs no model code: QSNGAN-32 as PHC-8 builds, runs, and holds half the quaternion weights."""
    import importlib

    from flax import traverse_util

    from qgan_jax import models

    def variables(**model):
        config = importlib.import_module("configs.qsngan_cifar10").get_config()
        config.model.update(g_width=64, d_width=64, **model)
        generator, discriminator = models.build(config)
        images = jnp.asarray(rng.uniform(-1, 1, size=(2, 32, 32, 8)), jnp.float32)
        d_vars = discriminator.init(jax.random.key(0), images, train=False)
        assert discriminator.apply(d_vars, images, train=False).shape == (2,)
        g_vars = jax.eval_shape(lambda: generator.init(jax.random.key(0), jnp.zeros((2, 128)), train=False))
        return {net: traverse_util.flatten_dict(v["params"]) for net, v in (("g", g_vars), ("d", d_vars))}

    quaternion = variables(channels=8)
    phc8 = variables(channels=8, algebra="phc", phc_n=8)
    checked = 0
    for net in ("g", "d"):
        for path, kernel in quaternion[net].items():
            if path[-1] != "kernel" or len(kernel.shape) < 3 or kernel.shape[0] != 4:
                continue  # real dense layers and norms are the same in every algebra
            prefix = path[:-1]
            assert phc8[net][prefix + ("A",)].shape == (8, 8, 8)
            assert np.prod(phc8[net][prefix + ("F",)].shape) * 2 == np.prod(kernel.shape)
            checked += 1
    assert checked == 20
