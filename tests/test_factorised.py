"""Factorised (transposed) convolutions and the factorised GANs (docs/decisions.md#gf-9 to
#gf-12, #d14)."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax import summary
from qgan_jax.layers import base, real
from qgan_jax.layers import factorised as fl
from qgan_jax.layers import quaternion as qt
from qgan_jax.layers.algebra import QUATERNION, Algebra
from qgan_jax.layers.factory import LayerFactory
from qgan_jax.models import dcgan, factorised_gan
from tests import numpy_reference as ref

F64 = {"param_dtype": jnp.float64}


def _random_variables(module, x, rng, **kwargs):
    """Shapes from ``jax.eval_shape(module.init)``, every leaf replaced by N(0, 1) values."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x, **kwargs))
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), shapes)


def _real_tap(w):
    return lambda t, x_at: x_at @ w[t]


def _np_same_conv_transpose(x, w, strides, bias=None, tap=None):
    """Keras 'same' Conv2DTranspose: the full scatter cropped (or zero-extended) to input * stride."""
    ksize, out = w.shape[:2], w.shape[-1]
    full = ref.conv_transpose_loop(x, ksize, strides, (0, 0), (0, 0), (1, 1), tap or _real_tap(w), out)
    sizes = [h * s for h, s in zip(x.shape[1:3], strides)]
    # The forward conv's 'SAME' low padding on the output is where the crop starts.
    lows = [ref.same_padding(size, k, s, 1)[0] for size, k, s in zip(sizes, ksize, strides)]
    full = np.pad(full, [(0, 0)] + [(0, max(0, lo + size - f)) for lo, size, f in
                                    zip(lows, sizes, full.shape[1:3])] + [(0, 0)])
    y = full[:, lows[0]:lows[0] + sizes[0], lows[1]:lows[1] + sizes[1]]
    return y if bias is None else y + bias


def _np_torch_conv_transpose(x, w, strides, padding, output_padding, bias=None):
    y = ref.conv_transpose_loop(x, w.shape[:2], strides, padding, output_padding, (1, 1), _real_tap(w), w.shape[-1])
    return y if bias is None else y + bias


def _np_conv(x, w, strides, padding, bias=None):
    """Cross-correlation; padding 'SAME', 'VALID' or (lo, hi) pairs per dimension."""
    ksize = w.shape[:2]
    if padding == "SAME":
        padding = [ref.same_padding(h, k, s, 1) for h, k, s in zip(x.shape[1:3], ksize, strides)]
    elif padding == "VALID":
        padding = [(0, 0), (0, 0)]
    y = ref.conv_loop(x, ksize, strides, padding, (1, 1), _real_tap(w), w.shape[-1])
    return y if bias is None else y + bias


def _halves(variables):
    p = jax.tree.map(np.asarray, variables["params"])
    return p["first"], p["second"]


# --- Keras 'same' transposed convolution -----------------------------------------------------------

@pytest.mark.parametrize("k,s,lax_pads", [(4, 2, (2, 2)), (5, 2, (3, 2)), (3, 2, (2, 1)), (1, 2, (0, 1)),
                                          (5, 1, (2, 2)), (3, 1, (1, 1))])
def test_same_transpose_padding_is_the_keras_table(k, s, lax_pads):
    (p,), (op,) = base.same_transpose_padding((k,), (s,), (1,))
    assert (k - 1 - p, k - 1 - p + op) == lax_pads  # docs/decisions.md#gf-12


@pytest.mark.parametrize("ksize,strides", [((4, 4), (2, 2)), ((5, 5), (2, 2)), ((3, 1), (2, 2)),
                                           ((1, 3), (2, 2)), ((5, 3), (1, 2)), ((2, 2), (2, 2))])
def test_same_conv_transpose_matches_numpy(x64, rng, ksize, strides):
    x = rng.normal(size=(2, 4, 3, 3))
    layer = real.ConvTranspose(5, ksize, strides=strides, padding="SAME", **F64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(layer.apply(variables, jnp.asarray(x)))
    p = jax.tree.map(np.asarray, variables["params"])
    assert y.shape == (2, 4 * strides[0], 3 * strides[1], 5)
    np.testing.assert_allclose(y, _np_same_conv_transpose(x, p["kernel"], strides, p["bias"]), atol=1e-12)


def test_same_quaternion_conv_transpose_matches_conjugate_loop(x64, rng):
    x = rng.normal(size=(2, 3, 4, 8))
    layer = QUATERNION.conv_transpose(12, (3, 3), strides=2, padding="SAME", **F64)
    assert isinstance(layer, qt.QuaternionConvTranspose)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(layer.apply(variables, jnp.asarray(x)))
    w, b = (np.asarray(variables["params"][k]) for k in ("kernel", "bias"))
    tap = ref.quaternion_tap(w, conjugate=True)
    expected = _np_same_conv_transpose(x, np.zeros((3, 3, 8, 12)), (2, 2), b, tap=tap)
    np.testing.assert_allclose(y, expected, atol=1e-12)


def test_same_conv_transpose_keeps_pytorch_int_padding(x64, rng):
    x = rng.normal(size=(1, 3, 3, 2))
    layer = real.ConvTranspose(3, (4, 4), strides=2, padding=1, **F64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    p = jax.tree.map(np.asarray, variables["params"])
    expected = _np_torch_conv_transpose(x, p["kernel"], (2, 2), (1, 1), (0, 0), p["bias"])
    np.testing.assert_allclose(layer.apply(variables, jnp.asarray(x)), expected, atol=1e-12)


# --- Factorised transposed convolutions --------------------------------------------------------------

@pytest.mark.parametrize("k", [3, 5])
def test_factorised_keras_transpose_matches_numpy_and_has_structural_zeros(x64, rng, k):
    """Both halves strided (2, 2), 'same': 5x4 -> 10x8 -> 20x16, exact zeros where no tap lands
    (docs/decisions.md#gf-9)."""
    x = rng.normal(size=(2, 5, 4, 3))
    layer = fl.FactorisedConvTranspose(4, k, variant="factorised_keras", strides=2, use_bias=False,
                                       layer_kwargs=F64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y, state = layer.apply(variables, jnp.asarray(x), capture_intermediates=True, mutable=["intermediates"])
    y, mid = np.asarray(y), np.asarray(state["intermediates"]["first"]["__call__"][0])
    first, second = _halves(variables)
    assert first["kernel"].shape == (k, 1, 3, 4) and second["kernel"].shape == (1, k, 4, 4)
    expected_mid = _np_same_conv_transpose(x, first["kernel"], (2, 2))
    np.testing.assert_allclose(mid, expected_mid, atol=1e-12)
    np.testing.assert_allclose(y, _np_same_conv_transpose(expected_mid, second["kernel"], (2, 2)), atol=1e-12)
    assert y.shape == (2, 20, 16, 4)
    assert np.all(mid[:, :, 1::2] == 0) and np.all(mid[:, :, 0::2] != 0)  # odd columns after (k, 1)
    assert np.all(y[:, 1::2] == 0)                                         # odd rows after (1, k)
    if k == 3:
        assert np.all(y[:, :, 3::4] == 0)                                  # columns = 3 (mod 4)
        assert np.all(y[:, 0::2, 0::4] != 0)
    else:                                                                  # the 5 taps cover every column
        assert np.all(y[:, 0::2] != 0)


def test_factorised_keras_applies_the_activation_on_both_halves(x64, rng):
    x = rng.normal(size=(2, 3, 3, 2))
    layer = fl.FactorisedConvTranspose(1, 5, variant="factorised_keras", activation=jnp.tanh, layer_kwargs=F64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    first, second = _halves(variables)
    h = np.tanh(_np_same_conv_transpose(x, first["kernel"], (1, 1), first["bias"]))
    expected = np.tanh(_np_same_conv_transpose(h, second["kernel"], (1, 1), second["bias"]))
    np.testing.assert_allclose(layer.apply(variables, jnp.asarray(x)), expected, atol=1e-12)


@pytest.mark.parametrize("k,strides,padding,output_padding", [
    (4, 2, 1, 0), (4, 1, 0, 0), (3, 2, 1, 1), (5, (2, 1), (2, 1), (1, 0)), (5, 2, "SAME", 0), (3, 2, "SAME", 0)])
def test_clean_factorised_transpose_matches_numpy_and_the_naive_size(x64, rng, k, strides, padding,
                                                                     output_padding):
    x = rng.normal(size=(2, 4, 3, 3))
    layer = fl.FactorisedConvTranspose(5, k, variant="factorised", strides=strides, padding=padding,
                                       output_padding=output_padding, activation=jnp.tanh, layer_kwargs=F64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(layer.apply(variables, jnp.asarray(x)))
    first, second = _halves(variables)
    sh, sw = (strides,) * 2 if isinstance(strides, int) else strides
    naive = real.ConvTranspose(5, (k, k), strides=strides, padding=padding, output_padding=output_padding)
    naive_shape = jax.eval_shape(lambda: naive.init_with_output(jax.random.key(0), jnp.asarray(x))[0]).shape
    assert y.shape == naive_shape  # nothing between the halves changes the geometry
    if padding == "SAME":
        h = _np_same_conv_transpose(x, first["kernel"], (sh, 1), first["bias"])  # no activation between
        h = _np_same_conv_transpose(h, second["kernel"], (1, sw), second["bias"])
    else:
        (ph, pw), (oh, ow) = [(v,) * 2 if isinstance(v, int) else v for v in (padding, output_padding)]
        h = _np_torch_conv_transpose(x, first["kernel"], (sh, 1), (ph, 0), (oh, 0), first["bias"])
        h = _np_torch_conv_transpose(h, second["kernel"], (1, sw), (0, pw), (0, ow), second["bias"])
    np.testing.assert_allclose(y, np.tanh(h), atol=1e-12)


# --- Factorised regular convolutions -----------------------------------------------------------------

@pytest.mark.parametrize("variant,k,strides,padding", [
    ("factorised_keras", 5, 1, "SAME"), ("factorised_keras", 3, 2, "SAME"), ("factorised_keras", 3, 1, "VALID"),
    ("factorised", 5, 2, "SAME"), ("factorised", 4, 2, 1), ("factorised", 3, (2, 1), [(1, 0), (0, 2)]),
    ("factorised", 3, 2, "VALID")])
def test_factorised_conv_matches_numpy(x64, rng, variant, k, strides, padding):
    x = rng.normal(size=(2, 7, 6, 3))
    layer = fl.FactorisedConv(4, k, variant=variant, strides=strides, padding=padding, layer_kwargs=F64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    y = np.asarray(layer.apply(variables, jnp.asarray(x)))
    first, second = _halves(variables)
    sh, sw = (strides,) * 2 if isinstance(strides, int) else strides
    if variant == "factorised_keras":
        h = _np_conv(x, first["kernel"], (sh, sw), padding, first["bias"])
        h = _np_conv(h, second["kernel"], (sh, sw), padding, second["bias"])
    else:
        if isinstance(padding, str):
            pad1 = pad2 = padding
        else:
            pad_h, pad_w = [(p, p) if isinstance(p, int) else p for p in
                            (padding if isinstance(padding, list) else (padding, padding))]
            pad1, pad2 = [pad_h, (0, 0)], [(0, 0), pad_w]
        h = _np_conv(x, first["kernel"], (sh, 1), pad1, first["bias"])
        h = _np_conv(h, second["kernel"], (1, sw), pad2, second["bias"])
        naive = real.Conv(4, (k, k), strides=strides, padding=padding)
        assert y.shape == jax.eval_shape(lambda: naive.init_with_output(jax.random.key(0), jnp.asarray(x))[0]).shape
    np.testing.assert_allclose(y, h, atol=1e-12)


def test_factorised_pairs_compose_with_the_algebra_switch(x64, rng):
    """A factorised quaternion pair is two quaternion convs; PHC and spectral norm give valid layers too."""
    x = rng.normal(size=(2, 3, 3, 8))
    layer = fl.FactorisedConvTranspose(12, 3, variant="factorised", strides=2, padding=1, output_padding=1,
                                       algebra=QUATERNION, layer_kwargs=F64)
    variables = _random_variables(layer, jnp.asarray(x), rng)
    first, second = _halves(variables)
    assert first["kernel"].shape == (4, 3, 1, 2, 3) and second["kernel"].shape == (4, 1, 3, 3, 3)
    h = ref.conv_transpose_loop(x, (3, 1), (2, 1), (1, 0), (1, 0), (1, 1),
                                ref.quaternion_tap(first["kernel"], conjugate=True), 12) + first["bias"]
    h = ref.conv_transpose_loop(h, (1, 3), (1, 2), (0, 1), (0, 1), (1, 1),
                                ref.quaternion_tap(second["kernel"], conjugate=True), 12) + second["bias"]
    np.testing.assert_allclose(layer.apply(variables, jnp.asarray(x)), h, atol=1e-12)

    pair = fl.FactorisedConv(6, 5, variant="factorised_keras", algebra=Algebra("phc", 3), spectral_norm=True)
    shapes = jax.eval_shape(lambda: pair.init(jax.random.key(0), jnp.zeros((1, 6, 6, 3))))
    assert set(shapes["params"]["first"]["layer"]) == {"A", "F", "bias"}
    assert shapes["params"]["second"]["layer"]["F"].shape == (3, 1, 5, 2, 2)
    assert shapes["batch_stats"]["second"]["v"].shape == (30,)


def test_factorised_layer_errors_are_clear():
    x = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="variant must be one of factorised_keras, factorised, got 'keras'"):
        jax.eval_shape(lambda: fl.FactorisedConv(2, 3, variant="keras").init(jax.random.key(0), x))
    with pytest.raises(ValueError, match="'factorised_keras' pads both halves Keras-style"):
        jax.eval_shape(lambda: fl.FactorisedConvTranspose(2, 4, strides=2, padding=1).init(jax.random.key(0), x))
    with pytest.raises(ValueError, match="output_padding must be 0 with padding 'SAME'"):
        layer = real.ConvTranspose(2, (3, 3), strides=2, padding="SAME", output_padding=1)
        jax.eval_shape(lambda: layer.init(jax.random.key(0), x))


# --- Models and counts (docs/decisions.md#gf-10) --------------------------------------------------

def _config(name):
    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name,g_with_stats,g_trainable,d_count", [
    ("naive_cifar10", 6_264_579, 6_264_579, 790_913),
    ("factorised_cifar10", 3_971_587, 3_971_587, 790_913),
    ("naive_mnist", 2_330_944, 2_305_472, 212_865),
    ("factorised_mnist", 1_588_805, 1_563_077, 212_865),
    ("naive_emnist", 4_287_808, 4_262_336, 212_865),
    ("factorised_emnist", 3_570_245, 3_544_517, 212_865),
])
def test_reference_parameter_counts(name, g_with_stats, g_trainable, d_count):
    counts = summary.parameter_counts(_config(name))
    assert counts == {"generator_params": g_trainable, "discriminator_params": d_count,
                      "generator_params_with_stats": g_with_stats, "discriminator_params_with_stats": d_count}


def test_clean_variant_keeps_the_counts_and_the_image_size():
    config = _config("factorised_mnist")
    config.model.factorised_gan.variant = "factorised"
    assert summary.parameter_counts(config)["generator_params_with_stats"] == 1_588_805
    generator, _ = factorised_gan.build(config.model)
    z = jnp.zeros((2, 100))
    shapes = jax.eval_shape(lambda: generator.init(jax.random.key(0), z))
    assert jax.eval_shape(lambda v: generator.apply(v, z), shapes).shape == (2, 28, 28, 1)


def test_naive_twin_summary_reports_the_saving():
    config = _config("factorised_mnist")
    record = summary.naive_twin_summary(config, summary.parameter_counts(config))
    assert record["naive_generator_params_with_stats"] == 2_330_944
    assert record["naive_generator_params"] == 2_305_472
    assert round(record["generator_params_with_stats_saved_percent"], 2) == 31.84  # docs/decisions.md#d14: not 31.15
    assert summary.naive_twin_summary(_config("naive_mnist"), {}) == {}
    dcgan_config = _config("dcgan_celeba64")
    dcgan_config.model.factorised = True
    assert factorised_gan.naive_twin(dcgan_config).model.factorised is False


def test_summary_run_writes_with_stats_and_the_twin(tmp_path, capsys):
    config = _config("factorised_mnist")
    config.model.g_width, config.model.d_width = 8, 8  # FLOPs need a compile: keep it small.
    record = summary.run(config, str(tmp_path))
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == record
    for key in ("generator_params", "discriminator_params", "generator_flops", "discriminator_flops",
                "generator_params_with_stats", "discriminator_params_with_stats", "naive_generator_params",
                "generator_params_saved_percent"):
        assert key in record
    assert record["generator_params_with_stats"] - record["generator_params"] == 2 * (7 * 7 * 32 + 16 + 16 + 8)
    assert "naive twin generator" in capsys.readouterr().out


def test_mnist_generator_uses_keras_batch_norm_and_leaky_slope(rng):
    config = _config("factorised_mnist")
    config.model.g_width = 4
    generator, _ = factorised_gan.build(config.model)
    z = jnp.asarray(rng.normal(size=(3, 100)), jnp.float32)
    shapes = jax.eval_shape(lambda: generator.init(jax.random.key(0), z))
    variables = {"params": jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.1, a.dtype),
                                        shapes["params"]),
                 "batch_stats": jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes["batch_stats"])}
    _, state = jax.jit(lambda v: generator.apply(v, z, train=True, mutable=["batch_stats"]))(variables)
    h = np.asarray(z) @ np.asarray(variables["params"]["dense"]["kernel"])
    np.testing.assert_allclose(state["batch_stats"]["bn0"]["mean"], 0.01 * h.mean(0), rtol=1e-4, atol=1e-6)
    assert factorised_gan.LEAKY_SLOPE == 0.3


def test_discriminator_dropout_needs_a_dropout_rng(rng):
    config = _config("factorised_mnist")
    config.model.d_width = 4
    _, discriminator = factorised_gan.build(config.model)
    x = jnp.asarray(rng.uniform(-1, 1, size=(2, 28, 28, 1)), jnp.float32)
    variables = _random_variables(discriminator, x, rng)
    apply = jax.jit(lambda v, key: (discriminator.apply(v, x, train=True), discriminator.apply(v, x, train=False),
                                    discriminator.apply(v, x, train=True, rngs={"dropout": key})))
    plain, evaluated, dropped = apply(variables, jax.random.key(1))
    np.testing.assert_array_equal(plain, evaluated)
    assert not np.allclose(dropped, plain)


def test_build_errors_name_the_field():
    config = _config("factorised_mnist")
    config.model.factorised_gan.layout = "svhn"
    with pytest.raises(ValueError, match="model.factorised_gan.layout must be one of mnist, cifar10, got 'svhn'"):
        factorised_gan.build(config.model)
    config = _config("factorised_mnist")
    config.model.factorised_gan.variant = "half"
    with pytest.raises(ValueError, match="model.factorised_gan.variant must be one of naive, factorised_keras"):
        factorised_gan.build(config.model)


# --- The factorised option of other families -----------------------------------------------------------

@pytest.mark.parametrize("algebra", ["real", "quaternion"])
def test_dcgan_factorised_generator(algebra):
    layers = LayerFactory(Algebra(algebra), init="normal")
    z = jnp.zeros((2, 128))
    counts, images = {}, {}
    for factorised in (False, True):
        generator = dcgan.Generator(layers, resolution=64, channels=4, width=64, factorised=factorised)
        shapes = jax.eval_shape(lambda: generator.init(jax.random.key(0), z))
        counts[factorised] = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(shapes["params"]))
        images[factorised] = jax.eval_shape(lambda v: generator.apply(v, z), shapes).shape
    assert images[True] == images[False] == (2, 64, 64, 4)
    scale = 4 if algebra == "quaternion" else 1  # quaternion kernels hold 1/4 of the real weights
    widths = [128, 512, 256, 128, 64, 4]
    naive = sum(16 * i * o for i, o in zip(widths, widths[1:])) // scale
    pairs = sum(4 * i * o + 4 * o * o for i, o in zip(widths, widths[1:])) // scale
    assert counts[True] - counts[False] == pairs - naive
    with pytest.raises(ValueError, match="pads both halves Keras-style"):
        generator = dcgan.Generator(layers, resolution=64, channels=4, factorised="factorised_keras")
        jax.eval_shape(lambda: generator.init(jax.random.key(0), z))


# --- Training ---------------------------------------------------------------------------------------------

@pytest.fixture
def fast_compile():
    """XLA without most optimisations: these tests run few steps, so compile time dominates."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.mark.slow
def test_factorised_mnist_trains_two_steps(tmp_path, rng, fast_compile):
    from qgan_jax import train
    np.savez(tmp_path / "mnist.npz", image=rng.integers(0, 256, size=(16, 28, 28), dtype=np.uint8))
    config = _config("factorised_mnist")
    config.model.g_width, config.model.d_width, config.model.z_dim = 4, 4, 8
    config.data.source = f"npz:{tmp_path / 'mnist.npz'}"
    config.train.batch_size, config.train.num_steps, config.train.log_every = 4, 2, 1
    config.train.tensorboard = False
    config.checkpoint.every_steps = config.sample.every_steps = 0
    config.sample.num_images = config.sample.batch_size = 4
    state = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert int(state.step) == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r[k]) for r in records for k in ("d_loss", "g_loss"))
