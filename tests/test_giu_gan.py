"""GIU-GAN models: exact parameter counts (docs/decisions.md#gf-5 to #gf-7), the six GIU placements, the model
contract, training."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax import experiment, models
from qgan_jax.models import giu_gan


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _config(name, **overrides):
    """configs/<name>.py with overrides given as dotted paths relative to config.model ('giu.rbn')."""
    config = importlib.import_module(f"configs.{name}").get_config()
    for path, value in overrides.items():
        node = config.model
        *parents, leaf = path.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return models.resolve(config)


def _fill(shapes, rng):
    """Variables from shapes: N(0, 0.05^2) params (unit BN / RBN scales), positive statistics, unit u / v."""
    def fill(path, a):
        name = jax.tree_util.keystr(path)
        if "'var'" in name or "'u'" in name or "'v'" in name:
            value = rng.uniform(0.5, 1.5, size=a.shape)
        elif "'scale'" in name or "'scale_bias'" in name:
            value = 1.0 + 0.05 * rng.normal(size=a.shape)
        else:
            value = 0.05 * rng.normal(size=a.shape)
        return jnp.asarray(value, a.dtype)
    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize("name,overrides,g_count,d_count", [
    ("giu_cifar10", {}, 1_218_912, 696_864),                  # 1,915,776 (paper 1.92M)
    ("giu_celeba64", {}, 3_944_064, 2_900_032),               # 6,844,096 (paper 6.91M, -0.95 %)
    ("giu_baseline_cifar10", {}, 1_183_616, 662_528),         # 1,846,144 (paper 1.85M)
    ("giu_baseline_celeba64", {}, 3_806_080, 2_763_776),      # 6,569,856 (paper 6.57M)
    ("giu_cifar10", {"giu.reduction": 16}, 1_199_616, 677_568),       # r_1 = 16: 1,877,184
    ("giu_celeba64", {"giu.reduction": 16}, 3_867_072, 2_823_040),    # 6,690,112
    ("giu_celeba64", {"giu.se_reduction": 8}, 3_976_864, 2_932_832),  # 6,909,696
    ("giu_cifar10_no_rbn", {}, 1_217_952, 696_864),
    ("giu_cifar10_no_giu", {}, 1_184_576, 662_528),
    ("dcgan_cifar10", {}, 1_183_616, 663_296),                # D with BN
    ("wgan_gp_cifar10", {}, 1_183_616, 662_528),
    ("lsgan_cifar10", {}, 1_183_616, 663_296),
    ("sngan_dcgan_cifar10", {}, 1_183_616, 662_528),
])
def test_parameter_counts(name, overrides, g_count, d_count):
    g, d = experiment.build(_config(name, **overrides)).variable_shapes()
    assert (_count(g["params"]), _count(d["params"])) == (g_count, d_count)


def test_issue_totals():
    totals = {name: sum(_count(t["params"]) for t in experiment.build(_config(name)).variable_shapes())
              for name in ("giu_cifar10", "giu_celeba64", "giu_baseline_cifar10", "giu_baseline_celeba64")}
    assert totals == {"giu_cifar10": 1_915_776, "giu_celeba64": 6_844_096,
                      "giu_baseline_cifar10": 1_846_144, "giu_baseline_celeba64": 6_569_856}


def test_cifar10_layer_breakdown():
    g, d = experiment.build(_config("giu_cifar10")).variable_shapes()
    assert {k: _count(v) for k, v in g["params"].items()} == {
        "deconv1": 524_288, "rbn1": 1_280, "giu1": 34_336, "deconv2": 524_288, "bn2": 256,
        "deconv3": 131_072, "rbn3": 320, "deconv4": 3_072}
    assert {k: _count(v) for k, v in d["params"].items()} == {
        "conv1": 3_072, "conv2": 131_072, "conv3": 524_288, "giu3": 34_336, "conv4": 4_096}
    # Spectral norm on every layer of G and D, GIU internals included (docs/decisions.md#d11).
    assert set(g["batch_stats"]["giu1"]["se"]) == {"fc1", "fc2"}
    assert set(g["batch_stats"]["giu1"]["involution"]) == {"reduce", "bn", "span"}
    assert set(d["batch_stats"]["giu3"]["involution"]["span"]) == {"u", "v"}
    assert all(set(d["batch_stats"][f"conv{i}"]) == {"u", "v"} for i in range(1, 5))
    assert all(set(g["batch_stats"][f"deconv{i}"]) == {"u", "v"} for i in range(1, 5))


@pytest.mark.parametrize("placement,g_giu,d_giu", [
    ("middle", {"giu2"}, {"giu2"}),
    ("shallow_d_deep_g", {"giu3"}, {"giu1"}),
    ("deep_d_shallow_g", {"giu1"}, {"giu3"}),
    ("all", {"giu1", "giu2", "giu3"}, {"giu1", "giu2", "giu3"}),
    ("g_only", {"giu1"}, set()),
    ("d_only", set(), {"giu3"}),
])
def test_each_placement_builds_and_runs(rng, placement, g_giu, d_giu):
    config = _config("giu_cifar10", **{"giu.placement": placement, "g_width": 16, "d_width": 16})
    built = experiment.build(config)
    generator, discriminator = built.generator, built.discriminator
    g_shapes, d_shapes = built.variable_shapes()
    assert {k for k in g_shapes["params"] if k.startswith("giu")} == g_giu
    assert {k for k in d_shapes["params"] if k.startswith("giu")} == d_giu
    z = jnp.asarray(rng.normal(size=(2, 128)), jnp.float32)
    images, _ = generator.apply(_fill(g_shapes, rng), z, train=True, mutable=["batch_stats"])
    assert images.shape == (2, 32, 32, 3) and bool(jnp.all(jnp.abs(images) <= 1.0))
    logits, _ = discriminator.apply(_fill(d_shapes, rng), images, train=True, mutable=["batch_stats"])
    assert logits.shape == (2,) and bool(jnp.all(jnp.isfinite(logits)))


def test_placement_stages_at_64_px():
    assert giu_gan.placement_stages("middle", 4) == ((1,), (2,))       # both at 8x8
    assert giu_gan.placement_stages("deep_d_shallow_g", 4) == ((0,), (3,))
    assert giu_gan.placement_stages("all", 4) == ((0, 1, 2, 3), (0, 1, 2, 3))


def test_generator_and_discriminator_contract(rng):
    config = _config("giu_cifar10", g_width=16, d_width=16)
    built = experiment.build(config)
    generator, discriminator = built.generator, built.discriminator
    z = jnp.asarray(rng.normal(size=(3, 128)), jnp.float32)
    g_shapes, d_shapes = built.variable_shapes()
    g_vars = _fill(g_shapes, rng)
    images, g_state = jax.jit(lambda v, z: generator.apply(v, z, train=True, mutable=["batch_stats"]))(g_vars, z)
    assert images.shape == (3, 32, 32, 3) and float(jnp.abs(images).max()) <= 1.0
    for path in (("rbn1", "mean"), ("giu1", "involution", "bn", "var"), ("deconv2", "u"),
                 ("giu1", "se", "fc1", "u")):
        before, after = g_vars["batch_stats"], g_state["batch_stats"]
        for key in path:
            before, after = before[key], after[key]
        assert not np.array_equal(before, after), path
    _, unchanged = generator.apply(g_vars, z, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, unchanged["batch_stats"], g_vars["batch_stats"])
    d_vars = _fill(d_shapes, rng)
    logits, d_state = discriminator.apply(d_vars, images, train=True, mutable=["batch_stats"])
    assert logits.shape == (3,)
    assert not np.array_equal(d_state["batch_stats"]["giu3"]["involution"]["reduce"]["u"],
                              d_vars["batch_stats"]["giu3"]["involution"]["reduce"]["u"])
    _, unchanged = discriminator.apply(d_vars, images, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, unchanged["batch_stats"], d_vars["batch_stats"])


@pytest.mark.parametrize("algebra,phc_n,g_count,d_count", [("quaternion", 4, 306_688, 177_957),
                                                            ("phc", 4, 307_200, 178_469)])
def test_hypercomplex_variants_build_and_run(rng, algebra, phc_n, g_count, d_count):
    config = _config("giu_cifar10", algebra=algebra, phc_n=phc_n)
    assert config.model.channels == 4 and config.data.quaternion == "zero"
    built = experiment.build(config)
    generator, discriminator = built.generator, built.discriminator
    g_shapes, d_shapes = built.variable_shapes()
    assert (_count(g_shapes["params"]), _count(d_shapes["params"])) == (g_count, d_count)
    z = jnp.asarray(rng.normal(size=(2, 128)), jnp.float32)
    images, _ = generator.apply(_fill(g_shapes, rng), z, train=True, mutable=["batch_stats"])
    assert images.shape == (2, 32, 32, 4)
    logits, _ = discriminator.apply(_fill(d_shapes, rng), images, train=True, mutable=["batch_stats"])
    assert logits.shape == (2,) and bool(jnp.all(jnp.isfinite(logits)))


def test_unknown_placement_or_resolution_is_a_clear_error():
    with pytest.raises(ValueError, match="model.giu.placement = 'everywhere' is unknown; allowed: middle, "
                                         "shallow_d_deep_g, deep_d_shallow_g, all, g_only, d_only"):
        models.build(_config("giu_cifar10", **{"giu.placement": "everywhere"}))
    with pytest.raises(ValueError, match="model.resolution must be 4 \\* 2\\*\\*k"):
        models.build(_config("giu_cifar10", resolution=48))


def test_giu_block_optional_in_config():
    config = _config("giu_cifar10")
    del config.model["giu"]                   # a giu_gan config without the block gets the defaults
    g, d = experiment.build(config).variable_shapes()
    assert _count(g["params"]) + _count(d["params"]) == 1_915_776


def _train_and_evaluate():
    from qgan_jax import train
    return train.train_and_evaluate


def _tiny_giu_cifar10(**model_overrides):
    config = importlib.import_module("configs.giu_cifar10").get_config()
    config.model.g_width = 16
    config.model.d_width = 16
    for key, value in model_overrides.items():
        config.model[key] = value
    config.data.source = "sample:cifar10"
    config.train.batch_size = 8
    config.train.num_steps = 2
    config.train.log_every = 1
    config.train.tensorboard = False
    config.checkpoint.every_steps = 2
    config.sample.every_steps = 2
    config.sample.num_images = 4
    config.eval.every_steps = 0
    return config


def _check_metrics(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "d_loss" in r]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        for key in ("d_loss", "g_loss", "gp"):
            assert np.isfinite(record[key]), (key, record)
        assert record["gp"] > 0


def test_giu_cifar10_trains_two_steps_with_gradient_penalty(tmp_path):
    """CI's end-to-end run of the headline config on the embedded sample (2 critic steps to compile faster)."""
    train_and_evaluate = _train_and_evaluate()
    config = _tiny_giu_cifar10()
    assert (config.loss.name, config.loss.gp_weight, config.train.n_critic) == ("wasserstein", 10.0, 5)
    config.train.n_critic = 2
    state = train_and_evaluate(config, tmp_path)
    assert int(state.step) == 2
    _check_metrics(tmp_path)


@pytest.mark.slow
def test_quaternion_giu_cifar10_trains_two_steps(tmp_path):
    train_and_evaluate = _train_and_evaluate()
    state = train_and_evaluate(_tiny_giu_cifar10(algebra="quaternion"), tmp_path)
    assert int(state.step) == 2
    _check_metrics(tmp_path)


def test_factorised_option_and_sagan_baseline():
    config = _config("giu_cifar10")
    g_plain, _ = experiment.build(config).variable_shapes()
    config.model.factorised = True
    g_fact, _ = experiment.build(config).variable_shapes()
    assert _count(g_fact["params"]) < _count(g_plain["params"])
    g, d = experiment.build(_config("sagan_cifar10")).variable_shapes()
    assert "attention3" in g["params"] and "attention1" in d["params"]
    # One block at 64 channels: q, k (64 -> 8, bias), v (64 -> 64, bias), gamma.
    assert _count(g["params"]["attention3"]) == 2 * (64 * 8 + 8) + 64 * 64 + 64 + 1
