"""GANsformer model: contract, latents layout, mapping, truncation / mixing / noise, helpers, training steps."""

import importlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax import models
from qgan_jax.models import gansformer as gf
from tests.test_stylegan_layers import numpy_variables


def tiny_config(resolution=8, algebra="real", **fields):
    """configs/gansformer_cifar10.py shrunk: K = 3 latents of d = 8 (z_dim 32), at most 16 channels."""
    config = importlib.import_module("configs.gansformer_cifar10").get_config()
    config.model.resolution = resolution
    config.model.algebra = algebra
    g = config.model.gansformer
    g.num_latents, g.latent_dim, g.channel_base, g.channel_max = 3, 8, 8 * resolution, 16
    for key, value in fields.items():
        g[key] = value
    return models.resolve(config)


def _build(config, batch=4, strength=0.0, seed=0):
    generator, discriminator = models.build(config)
    z = np.random.default_rng(seed).normal(size=(batch, config.model.z_dim)).astype(np.float32)
    g_vars = numpy_variables(generator, jnp.asarray(z), seed=seed)
    g_vars = jax.tree_util.tree_map_with_path(
        lambda path, v: np.full(v.shape, strength, v.dtype) if getattr(path[-1], "key", "") == "strength" else v,
        g_vars)
    r, c = config.model.resolution, config.model.channels
    d_vars = numpy_variables(discriminator, jnp.zeros((batch, r, r, c)), seed=seed + 1)
    return generator, discriminator, g_vars, d_vars, jnp.asarray(z)


def test_forward_contract_and_w_avg():
    config = tiny_config()
    assert config.model.z_dim == (3 + 1) * 8
    generator, discriminator, g_vars, d_vars, z = _build(config, strength=0.3)
    images, state = generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
    assert images.shape == (4, 8, 8, 3)
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    assert float(jnp.abs(state["batch_stats"]["w_avg"]).max()) > 0          # EMA moved from 0 in train mode
    again = generator.apply(g_vars, z, train=True, mutable=["batch_stats"])[0]
    np.testing.assert_array_equal(images, again)                            # no rngs: a function of z
    _, unchanged = generator.apply(g_vars, z, train=False, mutable=["batch_stats"])
    np.testing.assert_array_equal(unchanged["batch_stats"]["w_avg"], g_vars["batch_stats"]["w_avg"])
    logits = discriminator.apply(d_vars, images, train=True)
    assert logits.shape == (4,) and bool(jnp.all(jnp.isfinite(logits)))
    # The output clip is straight-through: the released linear output's gradient.
    x = jnp.asarray([-3.0, 0.5, 2.0])
    np.testing.assert_array_equal(gf.straight_through_clip(x), [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(gf.straight_through_clip(x) * 2.0))(x), [2.0, 2.0, 2.0])


def test_rng_streams_noise_modes_truncation_and_mixing():
    config = tiny_config()
    generator, _, g_vars, _, z = _build(config, strength=0.5)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    a = generator.apply(g_vars, z, rngs={"noise": k1})
    b = generator.apply(g_vars, z, rngs={"noise": k2})
    assert not np.allclose(a, b)                                            # random noise follows the stream
    c1 = generator.apply(g_vars, z, noise_mode="const", rngs={"noise": k1})
    c2 = generator.apply(g_vars, z, noise_mode="const", rngs={"noise": k2})
    np.testing.assert_array_equal(c1, c2)
    # Truncation psi = 0: every slot of every sample is w_avg.
    w_avg = np.linspace(-1, 1, 8).astype(np.float32)
    variables = {**g_vars, "batch_stats": {"w_avg": w_avg}}
    _, aux = generator.apply(variables, z, truncation_psi=0.0, return_aux=True)
    np.testing.assert_allclose(aux["ws"], np.broadcast_to(w_avg, aux["ws"].shape), atol=1e-6)
    _, aux = generator.apply(variables, z, truncation_psi=0.0, truncation_cutoff=2, return_aux=True)
    np.testing.assert_allclose(aux["ws"][:, :, :2], np.broadcast_to(w_avg, (4, 4, 2, 8)), atol=1e-6)
    assert not np.allclose(aux["ws"][:, :, 2:], w_avg)
    # Style mixing: prob 1 always switches to a second latent at a cutoff in [1, num_ws); prob 0 never.
    _, aux = generator.apply(g_vars, z, train=True, style_mixing_prob=1.0, return_aux=True, rngs={"mixing": k1},
                             mutable=["batch_stats"])[0]
    ws = np.asarray(aux["ws"])
    assert ws.shape == (4, 4, 5, 8) and not np.allclose(ws[:, :, 0], ws[:, :, -1])
    _, aux = generator.apply(g_vars, z, train=True, style_mixing_prob=0.0, return_aux=True,
                             mutable=["batch_stats"])[0]
    np.testing.assert_array_equal(aux["ws"][:, :, 0], aux["ws"][:, :, -1])


def test_mapping_keeps_the_global_latent_last_and_separate(rng):
    mapping = gf.MappingNetwork(3, dropout=0.0)
    z = jnp.asarray(rng.normal(size=(2, 4, 8)), jnp.float32)
    pos = jnp.asarray(rng.uniform(size=(3, 8)), jnp.float32)
    variables = numpy_variables(mapping, z, pos)
    params = variables["params"]
    assert set(params) == {"global_mlp", "local_mlp"}
    assert {k for k in params["local_mlp"] if k.startswith("sa")} == {"sa0", "sa1", "sa2", "sa3"}  # 4 units
    assert "sa0" not in params["global_mlp"] and "out" in params["global_mlp"]
    w = mapping.apply(variables, z, pos)
    assert w.shape == (2, 4, 8)
    w_global = mapping.apply(variables, z.at[:, 3].add(1.0), pos)
    np.testing.assert_array_equal(w_global[:, :3], w[:, :3])
    assert not np.allclose(w_global[:, 3], w[:, 3])
    w_local = mapping.apply(variables, z.at[:, 0].add(1.0), pos)
    np.testing.assert_array_equal(w_local[:, 3], w[:, 3])
    assert not np.allclose(w_local[:, 1], w[:, 1])                        # self-attention mixes the locals
    # Joint (PT) normalisation: scaling all local latents together leaves w unchanged.
    np.testing.assert_allclose(mapping.apply(variables, z * 3.0, pos), w, rtol=1e-4, atol=1e-5)


def test_only_the_global_latent_styles_the_image_without_attention():
    config = tiny_config(attention=False)
    generator, _, g_vars, _, z = _build(config)
    assert "latent_pos" not in g_vars["params"] and "local_mlp" not in g_vars["params"]["mapping"]
    zk = np.asarray(z).reshape(4, 4, 8)
    changed_local = jnp.asarray(zk + np.array([1.0, 1.0, 1.0, 0.0])[None, :, None]).reshape(4, 32)
    changed_global = jnp.asarray(zk + np.array([0.0, 0.0, 0.0, 1.0])[None, :, None]).reshape(4, 32)
    base = generator.apply(g_vars, z, noise_mode="none")
    np.testing.assert_array_equal(generator.apply(g_vars, changed_local, noise_mode="none"), base)
    assert not np.allclose(generator.apply(g_vars, changed_global, noise_mode="none"), base)


@pytest.mark.parametrize("resolution,slots,layers", [(32, 9, 7), (64, 11, 9)])
def test_layer_slots_and_attention_layers(resolution, slots, layers):
    assert gf.num_ws(resolution) == slots and gf.attention_layer_count(resolution) == layers
    config = tiny_config(resolution=resolution)
    generator, _ = models.build(config)
    z = jnp.zeros((2, config.model.z_dim))
    variables = jax.eval_shape(lambda: generator.init(jax.random.PRNGKey(0), z))
    _, aux = jax.eval_shape(lambda v: generator.apply(v, z, return_aux=True), variables)
    assert aux["ws"].shape == (2, 4, slots, 8)
    assert len(aux["attention"]) == layers
    assert aux["attention"][-1].shape == (2, 1, resolution * resolution, 3)


def test_quaternion_gansformer_builds_and_runs():
    config = tiny_config(resolution=8, algebra="quaternion", duplex=True, keys="latents")
    assert config.model.channels == 4
    generator, discriminator, g_vars, d_vars, z = _build(config)
    params = g_vars["params"]
    assert params["b8_conv0"]["conv"]["kernel"].shape == (4, 3, 3, 4, 2)     # quaternion synthesis convs
    assert params["b8_conv0"]["conv"]["affine"]["kernel"].shape == (8, 4)    # one style per quaternion unit
    assert "img2ltnt" in params["b8_conv0"]                                     # duplex latent updates
    assert d_vars["params"]["b8"]["conv0"]["kernel"].shape[0] == 4
    images, _ = generator.apply(g_vars, z, train=True, mutable=["batch_stats"])
    assert images.shape == (4, 8, 8, 4)
    logits = discriminator.apply(d_vars, images)
    assert logits.shape == (4,) and bool(jnp.all(jnp.isfinite(logits)))


def test_training_helpers():
    assert gf.ema_decay_from_half_life(10.0, 32) == pytest.approx(0.5 ** (32 / 10_000))
    z = jnp.ones((2, 5))
    np.testing.assert_array_equal(gf.z_key(z, 1), gf.z_key(jnp.ones((2, 5)), 1))
    assert not np.array_equal(gf.z_key(z, 1), gf.z_key(z.at[1, 4].set(2.0), 1))
    assert not np.array_equal(gf.z_key(z, 1), gf.z_key(z, 2))
    cut = [int(gf.style_mixing_cutoff(jax.random.PRNGKey(i), 9, 1.0)) for i in range(20)]
    assert min(cut) >= 1 and max(cut) < 9
    assert int(gf.style_mixing_cutoff(jax.random.PRNGKey(0), 9, 0.0)) == 9


def test_config_errors_and_attention_free_twin():
    config = tiny_config()
    config.model.z_dim = 30
    with pytest.raises(ValueError, match=r"model.z_dim = 30 must equal \(num_latents \+ 1\) \* latent_dim = 32"):
        models.build(config)
    config = tiny_config(keys="pixels")
    with pytest.raises(ValueError, match="model.gansformer.keys must be one of centroids, latents, got 'pixels'"):
        models.build(config)
    config = tiny_config()
    config.model.resolution = 12
    with pytest.raises(ValueError, match="power of 2 >= 8, got 12"):
        models.build(config)
    config = importlib.import_module("configs.gansformer_ffhq").get_config()
    config.model.gansformer.num_latents = 8                                  # z_dim follows the reference
    assert config.model.z_dim == 9 * 32
    twin = gf.attention_free_twin(config)
    assert twin.model.gansformer.attention is False and gf.attention_free_twin(twin) is None
    assert config.model.gansformer.attention is True


@pytest.mark.parametrize("name,k,d,gamma,mirror", [
    ("gansformer_clevr", 8, 16, 40.0, False), ("gansformer_ffhq", 16, 32, 10.0, True),
    ("gansformer_bedrooms", 16, 32, 100.0, False), ("gansformer_cityscapes", 16, 32, 20.0, True)])
def test_paper_configs(name, k, d, gamma, mirror):
    config = importlib.import_module(f"configs.{name}").get_config()
    g = config.model.gansformer
    assert (g.num_latents, g.latent_dim, config.loss.r1_gamma, config.data.random_flip) == (k, d, gamma, mirror)
    assert config.model.z_dim == (k + 1) * d and config.model.resolution == 256
    assert g.mapping_self_attention == (name != "gansformer_clevr") and g.style == (name != "gansformer_clevr")
    assert config.loss.name == "non_saturating" and config.optimizer.d.b2 == 0.99 and config.optimizer.g.lr == 0.002


@pytest.mark.slow
def test_trains_with_lazy_r1_style_mixing_and_ema(tmp_path):
    """A few steps of the released recipe through qgan_jax.train (NS loss, lazy R1, style mixing, EMA)."""
    from qgan_jax import train
    config = tiny_config(resolution=8)
    config.data.source = "sample:cifar10"
    config.data.image_size = 8
    config.data.max_examples = 16
    config.train.batch_size, config.train.num_steps, config.train.log_every = 4, 3, 1
    config.loss.r1_gamma, config.loss.r1_interval = 1.0, 2
    config.train.tensorboard = False
    config.checkpoint.every_steps = config.sample.every_steps = config.eval.every_steps = 0
    config.sample.num_images = 4
    state = train.train_and_evaluate(config, str(tmp_path))
    assert int(state.step) == 3
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["r1"] > 0 for r in records] == [True, False, True]   # lazy: D steps 0 and 2 only
    assert all(math.isfinite(r[k]) for r in records for k in ("d_loss", "g_loss"))
