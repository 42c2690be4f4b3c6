"""StyleGAN2 layers against NumPy: FIR resampling, resampled convolutions, modulated conv, minibatch stddev."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax.layers import quaternion as qt
from qgan_jax.layers import stylegan as sg
from qgan_jax.layers.algebra import QUATERNION, Algebra
from tests import numpy_reference as ref

F = (1, 3, 3, 1)


# --- Test helpers ----------------------------------------------------------------------------------

def numpy_variables(module, *args, seed=0, **kwargs):
    """Variables of ``module`` without a jitted init: ``jax.eval_shape`` then NumPy fills.

    Kernels, centroids, constants: N(0, 1); biases 0 (affine biases 1, the StyleGAN2 init); att_weight 1;
    noise strengths 0; w_avg 0; latent_pos U(0, 1).
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        names = [getattr(p, "key", str(p)) for p in path]
        name = names[-1]
        if name == "bias":
            value = np.full(leaf.shape, 1.0 if len(names) > 1 and names[-2] == "affine" else 0.0)
        elif name in ("torgb_bias", "strength", "w_avg"):
            value = np.zeros(leaf.shape)
        elif name == "att_weight":
            value = np.ones(leaf.shape)
        elif name == "latent_pos":
            value = rng.uniform(size=leaf.shape)
        else:
            value = rng.normal(size=leaf.shape)
        return value.astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def np_upfirdn(x, taps, up=1, down=1, pads=(0, 0, 0, 0), gain=1.0):
    """Direct 2-D upfirdn2d (non-separable): zero insertion, pad (x0, x1, y0, y1), true convolution, decimation."""
    f = np.asarray(taps, np.float64)
    f2 = np.outer(f, f) / f.sum() ** 2 * gain
    n, h, w, c = x.shape
    u = np.zeros((n, h * up, w * up, c))
    u[:, ::up, ::up] = x
    px0, px1, py0, py1 = pads
    u = np.pad(u, ((0, 0), (py0, py1), (px0, px1), (0, 0)))
    fh, fw = f2.shape
    oh, ow = u.shape[1] - fh + 1, u.shape[2] - fw + 1
    flipped = f2[::-1, ::-1]
    out = np.zeros((n, oh, ow, c))
    for i in range(fh):
        for j in range(fw):
            out += u[:, i:i + oh, j:j + ow] * flipped[i, j]
    return out[:, ::down, ::down]


def np_conv(x, k, stride=1, pad=0):
    """Cross-correlation, NHWC / HWIO, symmetric zero padding."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = k.shape[:2]
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, k.shape[-1]))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] @ k[i, j]
    return out


def np_conv_transpose(x, k, stride):
    """Scatter transposed convolution without padding: y[s i + t] += x[i] k[t]."""
    n, h, w, _ = x.shape
    kh, kw, _, co = k.shape
    out = np.zeros((n, (h - 1) * stride + kh, (w - 1) * stride + kw, co))
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride] += x @ k[i, j]
    return out


# --- FIR resampling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("up,down,pads,gain", [
    (2, 1, (2, 1, 2, 1), 4.0), (1, 2, (1, 1, 1, 1), 1.0), (1, 1, (1, 2, 0, 3), 1.0), (2, 1, (3, 2, 1, 0), 4.0)])
def test_upfirdn2d_matches_numpy(rng, up, down, pads, gain):
    x = rng.normal(size=(2, 6, 5, 3))
    got = sg.upfirdn2d(jnp.asarray(x, jnp.float32), F, up=up, down=down, padding=pads, gain=gain)
    np.testing.assert_allclose(got, np_upfirdn(x, F, up, down, pads, gain), rtol=1e-5, atol=1e-5)


def test_up_and_down_sampling_shapes_and_constants(rng):
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    up, down = sg.upsample2d(jnp.asarray(x)), sg.downsample2d(jnp.asarray(x))
    assert up.shape == (2, 16, 16, 3) and down.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(up, np_upfirdn(x, F, 2, 1, (2, 1, 2, 1), 4.0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(down, np_upfirdn(x, F, 1, 2, (1, 1, 1, 1)), rtol=1e-5, atol=1e-5)
    # Interior of a constant image is preserved (the filter sums to 1, the up gain restores the zeros).
    ones = jnp.ones((1, 8, 8, 1))
    np.testing.assert_allclose(sg.upsample2d(ones)[0, 2:-2, 2:-2], 1.0, rtol=1e-6)
    np.testing.assert_allclose(sg.downsample2d(ones)[0, 1:-1, 1:-1], 1.0, rtol=1e-6)
    # [1, 3, 3, 1] up-sampling is bilinear interpolation (half-pixel centres) away from the border.
    ramp = jnp.asarray(np.arange(8, dtype=np.float32)[None, None, :, None].repeat(8, axis=1))
    row = np.asarray(sg.upsample2d(ramp))[0, 8, 2:-2, 0]
    np.testing.assert_allclose(row, (np.arange(2, 14) - 0.5) / 2, rtol=1e-5)


@pytest.mark.parametrize("ksize", [3, 1])
def test_conv2d_resample_matches_stylegan2_order(rng, ksize):
    x = rng.normal(size=(2, 6, 6, 3))
    k = rng.normal(size=(ksize, ksize, 3, 4))
    xj, kj = jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)
    if ksize == 3:
        # StyleGAN2-ADA conv2d_resample: transposed conv (stride 2) then FIR with padding 1; FIR pad 2 then stride 2.
        want_up = np_upfirdn(np_conv_transpose(x, k, 2), F, pads=(1, 1, 1, 1), gain=4.0)
        want_down = np_conv(np_upfirdn(x, F, pads=(2, 2, 2, 2)), k, stride=2)
    else:
        want_up = np_upfirdn(np_conv(x, k), F, 2, 1, (2, 1, 2, 1), 4.0)
        want_down = np_conv(np_upfirdn(x, F, 1, 2, (1, 1, 1, 1)), k)
    up, down = sg.conv2d_resample(xj, kj, F, up=2), sg.conv2d_resample(xj, kj, F, down=2)
    assert up.shape == (2, 12, 12, 4) and down.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(up, want_up, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(down, want_down, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sg.conv2d_resample(xj, kj), np_conv(x, k, pad=ksize // 2), rtol=1e-4, atol=1e-4)


# --- Equalised layers, modulated conv ---------------------------------------------------------------

def test_equalized_dense_runtime_scale(rng):
    layer = sg.EqualizedDense(5, lr_multiplier=0.01, bias_init=0.0, act="lrelu")
    x = rng.normal(size=(3, 8)).astype(np.float32)
    variables = numpy_variables(layer, jnp.asarray(x))
    variables["params"]["bias"] = rng.normal(size=5).astype(np.float32)
    p = variables["params"]
    pre = x @ (p["kernel"] * 0.01 / math.sqrt(8)) + p["bias"] * 0.01
    want = np.where(pre > 0, pre, 0.2 * pre) * math.sqrt(2)
    np.testing.assert_allclose(layer.apply(variables, jnp.asarray(x)), want, rtol=1e-5, atol=1e-6)
    # The real initialiser stores N(0, 1) / lr_multiplier.
    kernel = layer.init(jax.random.PRNGKey(0), jnp.asarray(x))["params"]["kernel"]
    assert 50 < float(jnp.std(kernel)) < 200


def _np_modconv(x, w, p, up, demodulate, kernel):
    """Per-sample reference: explicit modulated (and demodulated) kernel per sample, then its convolution."""
    k, cin = kernel.shape[0], kernel.shape[2]
    styles = w @ (p["affine"]["kernel"] / math.sqrt(w.shape[1])) + p["affine"]["bias"]
    multiple = cin // styles.shape[1]
    styles = np.tile(styles, (1, multiple))
    weight = kernel / math.sqrt(k * k * cin)
    out = []
    for n in range(x.shape[0]):
        wn = weight * styles[n][None, None, :, None]
        if demodulate:
            wn = wn / np.sqrt(np.sum(wn ** 2, axis=(0, 1, 2)) + 1e-8)
        xn = x[n:n + 1]
        if up == 1:
            out.append(np_conv(xn, wn, pad=k // 2))
        else:
            out.append(np_upfirdn(np_conv_transpose(xn, wn, 2), F, pads=(1, 1, 1, 1), gain=4.0))
    return np.concatenate(out)


@pytest.mark.parametrize("up,demodulate", [(1, True), (2, True), (1, False)])
def test_modulated_conv_matches_per_sample_reference(rng, up, demodulate):
    layer = sg.ModulatedConv(6, 3, up=up, demodulate=demodulate)
    x = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
    w = rng.normal(size=(3, 7)).astype(np.float32)
    variables = numpy_variables(layer, jnp.asarray(x), jnp.asarray(w))
    p = jax.tree.map(np.asarray, variables["params"])
    got = layer.apply(variables, jnp.asarray(x), jnp.asarray(w))
    want = _np_modconv(x.astype(np.float64), w.astype(np.float64), p, up, demodulate, p["kernel"])
    assert got.shape == want.shape == (3, 4 * up, 4 * up, 6)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_quaternion_modulated_conv_is_a_per_sample_quaternion_conv(rng):
    layer = sg.ModulatedConv(8, 3, algebra=QUATERNION)
    x = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    w = rng.normal(size=(2, 6)).astype(np.float32)
    variables = numpy_variables(layer, jnp.asarray(x), jnp.asarray(w))
    p = jax.tree.map(np.asarray, variables["params"])
    assert p["kernel"].shape == (4, 3, 3, 2, 2) and p["affine"]["kernel"].shape == (6, 2)  # one style per unit
    kernel = np.asarray(qt.hamilton_kernel(jnp.asarray(p["kernel"], jnp.float32)), np.float64)
    got = layer.apply(variables, jnp.asarray(x), jnp.asarray(w))
    want = _np_modconv(x.astype(np.float64), w.astype(np.float64), p, 1, True, kernel)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    # The per-sample kernel w s d is still a quaternion kernel: each sample's output is a quaternion
    # convolution with components kernel_c * s_in * d_out (real scalars per unit).
    styles = w @ (p["affine"]["kernel"] / math.sqrt(6)) + 1.0
    scaled = p["kernel"] / math.sqrt(9 * 8) * styles[0][None, None, None, :, None]
    per_real = np.asarray(qt.hamilton_kernel(jnp.asarray(scaled)), np.float64)
    d = 1.0 / np.sqrt(np.sum(per_real ** 2, axis=(0, 1, 2)) + 1e-8)
    np.testing.assert_allclose(d.reshape(4, 2), np.broadcast_to(d[:2], (4, 2)), rtol=1e-5)  # same d per unit
    xq = ref.to_quaternions(x[:1].astype(np.float64))
    wq = ref.components_to_quaternions(scaled * d[:2][None, None, None, None, :])
    yq = np.zeros((1, 4, 4, 2, 4))
    xp = np.pad(xq, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
    for i in range(3):
        for j in range(3):
            for o in range(2):
                yq[:, :, :, o] += ref.qmul(wq[i, j, :, o][None, None, None], xp[:, i:i + 4, j:j + 4]).sum(axis=3)
    np.testing.assert_allclose(got[:1], ref.from_quaternions(yq), rtol=2e-4, atol=2e-4)


def test_phc_modulated_conv_runs_and_demodulates_per_unit(rng):
    layer = sg.ModulatedConv(6, 3, algebra=Algebra("phc", 3))
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 6)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)
    variables = numpy_variables(layer, x, w)
    assert set(variables["params"]) == {"A", "F", "affine"}
    y = layer.apply(variables, x, w)
    assert y.shape == (2, 4, 4, 6) and bool(jnp.all(jnp.isfinite(y)))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    kernel = np.stack([np.stack([ref.kron_sum_matrix(p["A"], p["F"][:, i, j]).T for j in range(3)])
                       for i in range(3)])                                    # Kronecker sums, HWIO
    x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)
    modulated = _np_modconv(x64, w64, p, 1, False, kernel)
    # d: per output channel energy of the modulated kernel, averaged over the 3 components of each unit.
    styles = np.tile(w64 @ (p["affine"]["kernel"] / math.sqrt(5)) + p["affine"]["bias"], (1, 3))   # (N, in)
    energy = np.einsum("hwio,ni->no", (kernel / math.sqrt(9 * 6)) ** 2, styles ** 2)             # (N, out)
    energy = np.tile(energy.reshape(2, 3, 2).mean(axis=1), (1, 3))
    np.testing.assert_allclose(y, modulated / np.sqrt(energy + 1e-8)[:, None, None, :], rtol=2e-4, atol=2e-4)


def test_modulated_conv_rejects_channels_outside_the_algebra():
    layer = sg.ModulatedConv(6, 3, algebra=QUATERNION)
    with pytest.raises(ValueError, match="features = 6 must be a multiple of 4"):
        jax.eval_shape(lambda: layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8)), jnp.zeros((1, 3))))


# --- Noise, minibatch stddev, discriminator -----------------------------------------------------------

def test_noise_maps_and_input():
    key = jax.random.PRNGKey(3)
    noise = sg.noise_map(key, 2, 4, 4, "random")
    assert noise.shape == (2, 4, 4, 1)
    const = sg.noise_map(None, 2, 4, 4, "const", layer_index=1)
    assert const.shape == (1, 4, 4, 1)
    np.testing.assert_array_equal(const, sg.noise_map(key, 5, 4, 4, "const", layer_index=1))
    assert sg.noise_map(key, 2, 4, 4, "none") is None
    with pytest.raises(ValueError, match="noise_mode must be one of random, const, none"):
        sg.noise_map(key, 2, 4, 4, "fixed")
    x = jnp.ones((2, 4, 4, 3))
    out = sg.NoiseInput().apply({"params": {"strength": jnp.asarray(0.5)}}, x, noise)
    np.testing.assert_allclose(out, x + 0.5 * noise)


def _np_mbstd(x, g, f):
    n, h, w, c = x.shape
    stats = []
    for start in range(0, n, g):
        group = x[start:start + g].reshape(g, h, w, f, c // f)
        std = np.sqrt(group.var(axis=0) + 1e-8)
        stats.append(np.repeat(std.mean(axis=(0, 1, 3))[None], g, axis=0))
    stats = np.concatenate(stats)[:, None, None, :]
    return np.concatenate([x, np.broadcast_to(stats, (n, h, w, f))], axis=-1)


@pytest.mark.parametrize("n,group,f,effective", [(8, 4, 1, 4), (3, 4, 1, 3), (6, 4, 4, 3)])
def test_minibatch_stddev_matches_numpy(rng, n, group, f, effective):
    x = rng.normal(size=(n, 3, 3, 8))
    got = sg.minibatch_stddev(jnp.asarray(x, jnp.float32), group, f)
    np.testing.assert_allclose(got, _np_mbstd(x, effective, f), rtol=1e-5, atol=1e-6)


def test_minibatch_stddev_groups_stay_within_batch_halves(rng):
    real, fake = rng.normal(size=(4, 2, 2, 2)), 10 + 5 * rng.normal(size=(4, 2, 2, 2))
    out = np.asarray(sg.minibatch_stddev(jnp.asarray(np.concatenate([real, fake]), jnp.float32), 4))
    np.testing.assert_allclose(out[:4, ..., -1], _np_mbstd(real, 4, 1)[..., -1], rtol=1e-5)


@pytest.mark.parametrize("algebra,channels", [("real", 3), ("quaternion", 4)])
def test_resnet_discriminator_contract(rng, algebra, channels):
    disc = sg.ResnetDiscriminator(16, channel_base=128, channel_max=16, algebra=Algebra(algebra))
    images = jnp.asarray(rng.uniform(-1, 1, size=(4, 16, 16, channels)), jnp.float32)
    variables = numpy_variables(disc, images)
    assert set(variables["params"]) == {"b16", "b8", "conv", "fc", "out"}
    if algebra == "quaternion":
        assert variables["params"]["conv"]["kernel"].shape == (4, 3, 3, 5, 4)  # 16 + 4 mbstd channels in
    logits = disc.apply(variables, images, train=True)
    assert logits.shape == (4,) and bool(jnp.all(jnp.isfinite(logits)))


def test_bias_act_and_filter_validation():
    x = jnp.asarray([-1.0, 2.0])
    want = [-0.2 * math.sqrt(2), 3 * math.sqrt(2)]
    np.testing.assert_allclose(sg.bias_act(x, jnp.asarray([0.0, 1.0]), "lrelu"), want, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown act 'gelu'; allowed: linear, lrelu"):
        sg.bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="resample_filter"):
        sg.fir_taps([1, -1])
