"""Model families: exact parameter counts, every config builds, block semantics against NumPy."""

import importlib
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import base
from qgan_jax import experiment, models
from qgan_jax.layers.algebra import QUATERNION
from qgan_jax.layers.factory import LayerFactory
from qgan_jax.models import common, sngan
from tests import numpy_reference as ref
from tests.test_normalization import _qbn_reference

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _config(module_name, **model_overrides):
    config = importlib.import_module(f"configs.{module_name}").get_config()
    for key, value in model_overrides.items():
        config.model[key] = value
    return config


@pytest.mark.parametrize("config_name,overrides,g_count,d_count", [
    ("sngan_cifar10", {}, 4_276_739, 1_053_824),
    ("qsngan_cifar10", {}, 1_469_124, 264_832),
    ("sngan_celebahq128", {}, 32_150_787, 29_017_857),
    ("qsngan_celebahq128", {}, 9_631_204, 7_260_673),
    ("dcgan_celeba64", {}, 3_806_080, 2_765_568),
    ("qdcgan_celeba64", {}, 952_496, 698_469),
    ("qsngan_cifar10", {"algebra": "real"}, 4_276_739, 1_053_824),      # the real twin
    ("qdcgan_celeba64", {"algebra": "real"}, 3_806_080, 2_765_568),
])
def test_reference_parameter_counts(config_name, overrides, g_count, d_count):
    g, d = experiment.build(_config(config_name, **overrides)).variable_shapes()
    assert (_count(g["params"]), _count(d["params"])) == (g_count, d_count)


@pytest.mark.parametrize("config_name,g_layers,d_layers", [
    ("qsngan_cifar10", 10, 10), ("qdcgan_celeba64", 5, 5), ("qsngan_celebahq128", 16, 17)])
def test_phc4_count_is_quaternion_plus_algebra_tensors(config_name, g_layers, d_layers):
    gq, dq = experiment.build(_config(config_name)).variable_shapes()
    gp, dp = experiment.build(_config(config_name, algebra="phc", phc_n=4)).variable_shapes()
    assert _count(gp["params"]) == _count(gq["params"]) + 64 * g_layers
    assert _count(dp["params"]) == _count(dq["params"]) + 64 * d_layers


def test_sngan_block_breakdown_matches_reference():
    g, d = experiment.build(_config("qsngan_cifar10")).variable_shapes()
    assert {k: _count(v) for k, v in g["params"].items()} == {
        "fully_connect": 528_384, "re0": 312_704, "re1": 312_704, "re2": 312_704, "bn": 320,
        "conv_res4": 2_308}
    # Reference re1 is 38,784 including the dead 256-parameter res_conv (docs/decisions.md#d7).
    assert {k: _count(v) for k, v in d["params"].items()} == {
        "re1": 38_528, "re2": 78_208, "re3": 73_984, "re4": 73_984, "fully_connect_gan2": 128}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.py")), ids=lambda p: p.stem)
def test_every_config_builds(path):
    if path.stem in ("__init__", "base"):
        pytest.skip("not a runnable config")
    config = importlib.import_module(f"configs.{path.stem}").get_config()
    assert isinstance(config, ml_collections.ConfigDict)
    g, d = experiment.build(config).variable_shapes()
    assert _count(g["params"]) > 0 and _count(d["params"]) > 0


def test_unknown_model_or_algebra_is_a_clear_error():
    config = base.get_config()
    config.model.name = "stylegan9"
    with pytest.raises(ValueError, match="Unknown model.name 'stylegan9'; allowed: dcgan, factorised_gan, gansformer, giu_gan, sngan"):
        models.build(config)
    config = base.get_config()
    config.model.algebra = "octonion"
    with pytest.raises(ValueError, match="allowed: real, quaternion, phc"):
        models.build(config)
    config = base.get_config()
    config.model.algebra, config.model.phc_n, config.model.channels = "phc", 3, 4
    with pytest.raises(ValueError, match="model.channels = 4 is not a multiple of 3"):
        models.build(config)
    config = base.get_config()
    config.model.resolution = 64
    with pytest.raises(ValueError, match="g_multipliers"):
        models.build(config)
    config = base.get_config()
    config.lock()  # as main.py's config flag does
    with pytest.raises(AttributeError, match="algebr"):
        config.model.algebr = "real"


def test_generator_and_discriminator_contract():
    config = models.resolve(_config("qsngan_cifar10", g_width=16, d_width=8))
    generator, discriminator = models.build(config)
    z = jax.random.normal(jax.random.key(0), (3, 128))
    g_vars = generator.init(jax.random.key(1), z, train=False)
    images, g_state = jax.jit(lambda v, z: generator.apply(v, z, train=True, mutable=["batch_stats"]))(g_vars, z)
    assert images.shape == (3, 32, 32, 4) and float(jnp.abs(images).max()) <= 1.0
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g_state), jax.tree.leaves(g_vars["batch_stats"])))
    d_vars = discriminator.init(jax.random.key(2), images, train=False)
    logits, d_state = discriminator.apply(d_vars, images, train=True, mutable=["batch_stats"])
    assert logits.shape == (3,)
    u_before = d_vars["batch_stats"]["re1"]["conv1"]["u"]
    assert not np.array_equal(d_state["batch_stats"]["re1"]["conv1"]["u"], u_before)
    _, unchanged = discriminator.apply(d_vars, images, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, unchanged["batch_stats"], d_vars["batch_stats"])


def test_discriminator_pooling_sizes():
    pooled = common.avg_pool_padded(jnp.ones((1, 32, 32, 1)))
    assert pooled.shape == (1, 17, 17, 1)
    np.testing.assert_allclose(pooled[0, 0, 0, 0], 0.25)  # zero padding counted: divide by 4
    np.testing.assert_allclose(pooled[0, 1, 1, 0], 1.0)
    sizes, x = [], jnp.ones((1, 128, 128, 1))
    for _ in range(5):
        x = common.avg_pool_padded(x)
        sizes.append(x.shape[1])
    assert sizes == [65, 33, 17, 9, 5]


# --- Block semantics against NumPy (quaternion algebra, float64) --------------------------------

def _np_pool(x):
    x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2, c).mean(axis=(2, 4))


def _np_up(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def _np_conv(x, params, k):
    pad = (k - 1) // 2
    out = params["bias"].shape[0]
    return ref.conv_loop(x, (k, k), (1, 1), [(pad, pad)] * 2, (1, 1),
                         ref.quaternion_tap(np.asarray(params["kernel"])), out) + np.asarray(params["bias"])


def _random(variables, rng):
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.3, a.dtype), variables)


def _relu(x):
    return np.maximum(x, 0)


@pytest.fixture
def qlayers():
    return LayerFactory(QUATERNION, init="normal")


def test_residual_g_up_block(x64, rng, qlayers):
    block = sngan.ResidualG(qlayers, 8, batch_norm=True, up_sampling=True)
    x = rng.normal(size=(2, 3, 3, 4))
    variables = jax.eval_shape(lambda: block.init(jax.random.key(0), jnp.asarray(x), train=False))
    variables = {"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                        _random(variables["params"], rng)),
                 "batch_stats": jax.tree.map(lambda a: jnp.full(a.shape, 0.5), variables["batch_stats"])}
    y, _ = block.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    p = jax.tree.map(np.asarray, variables["params"])
    h, _, _ = _qbn_reference(x, p["batch_norm1"]["scale"], p["batch_norm1"]["bias"])
    h = _np_conv(_np_up(_relu(h)), p["conv1"], 3)
    h, _, _ = _qbn_reference(h, p["batch_norm2"]["scale"], p["batch_norm2"]["bias"])
    h = _np_conv(_relu(h), p["conv2"], 3)
    expected = h + _np_conv(_np_up(x), p["short_conv"], 1)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["first", "down", "identity"])
def test_residual_d_blocks(x64, rng, qlayers, kind):
    cin = 4 if kind == "first" else 8
    block = sngan.ResidualD(qlayers, 8, down_sampling=kind != "identity", first=kind == "first",
                            spectral_norm=False)
    x = rng.normal(size=(2, 5, 5, cin))
    shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), jnp.asarray(x), train=False))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _random(shapes["params"], rng))
    y = block.apply({"params": params}, jnp.asarray(x), train=True)
    p = jax.tree.map(np.asarray, params)
    if kind == "first":
        h = _np_pool(_np_conv(_relu(_np_conv(x, p["conv1"], 3)), p["conv2"], 3))
        expected = h + _np_pool(_np_conv(x, p["conv_short"], 1))
    else:
        h = _np_conv(_relu(_np_conv(_relu(x), p["conv1"], 3)), p["conv2"], 3)
        if kind == "down":
            expected = _np_pool(h) + _np_pool(_np_conv(x, p["conv_short"], 1))
        else:
            assert "conv_short" not in p
            expected = h + x
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
