"""GANsformer attention against a naive NumPy softmax attention; norms, grid codes, dropout, linear cost."""

import importlib
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax import models
from qgan_jax.layers import attention as att
from tests.test_stylegan_layers import numpy_variables


def _dense(x, p):
    return x @ (p["kernel"] / math.sqrt(p["kernel"].shape[0])) + p["bias"]


def _softmax_rows(s):
    out = np.empty_like(s)
    for i in range(s.shape[0]):  # explicit row-by-row softmax over the latents
        e = np.exp(s[i] - s[i].max())
        out[i] = e / e.sum()
    return out


def _np_norm(x, norm, integration):
    if norm == "none":
        return x
    axis = -1 if norm == "layer" else 0
    if integration in ("add", "both"):
        x = x - x.mean(axis=axis, keepdims=True)
    if integration in ("mul", "both"):
        x = x / np.sqrt((x ** 2).mean(axis=axis, keepdims=True) + 1e-8)
    return x


def np_attention(x, y, xpos, ypos, p, heads, keys, integration, norm, iters=1):
    """Naive per-sample, per-head attention with explicit (F, T) score matrices."""
    dim = p["to_queries"]["kernel"].shape[1]
    c = dim // heads
    outs, maps = [], []
    for b in range(x.shape[0]):
        q0 = _dense(x[b], p["to_queries"])
        q = q0 + _dense(xpos, p["from_pos_map"]) if xpos is not None else q0
        v = _dense(y[b], p["to_values"])
        ctx, probs_b = np.zeros((x.shape[1], dim)), []
        for h in range(heads):
            sl = slice(h * c, (h + 1) * c)
            if keys == "latents":
                k = _dense(y[b], p["to_keys"]) + (_dense(ypos, p["to_pos_map"]) if ypos is not None else 0)
                probs = _softmax_rows(q[:, sl] @ k[:, sl].T / math.sqrt(c))
            else:
                desc = np.concatenate([q0[:, sl], (q - q0)[:, sl]], axis=1)             # (F, 2c)
                cent = p["centroids"][0, h]                                            # (T, 2c)
                for it in range(iters):
                    if it > 0:
                        assign = probs / (probs.sum(axis=0, keepdims=True) + 1e-8)      # (F, T)
                        cent = assign.T @ desc
                    probs = _softmax_rows((desc * p["att_weight"][h, 0]) @ cent.T / math.sqrt(c))
            ctx[:, sl] = probs @ v[:, sl]
            probs_b.append(probs)
        control = _dense(ctx, p["modulation"])
        xn = _np_norm(x[b], norm, integration)
        if integration == "mul":
            outs.append(xn * (1 + control))
        elif integration == "add":
            outs.append(xn + control)
        else:
            gain, bias = np.split(control, 2, axis=-1)
            outs.append(xn * (1 + gain) + bias)
        maps.append(np.stack(probs_b))
    return np.stack(outs), np.stack(maps)


def _setup(rng, module, b=2, f=6, t=3, cf=8, ct=4, pos=4, x_pos=True, y_pos=True):
    x = jnp.asarray(rng.normal(size=(b, f, cf)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(b, t, ct)), jnp.float32)
    xp = jnp.asarray(rng.normal(size=(f, pos)), jnp.float32) if x_pos else None
    yp = jnp.asarray(rng.normal(size=(t, pos)), jnp.float32) if y_pos else None
    variables = numpy_variables(module, x, y, xp, yp)
    # Non-trivial biases so that every term is exercised.
    variables = jax.tree_util.tree_map_with_path(
        lambda path, v: v + 0.1 * rng.normal(size=v.shape).astype(v.dtype)
        if getattr(path[-1], "key", "") == "bias" else v, variables)
    return x, y, xp, yp, variables


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


@pytest.mark.parametrize("integration,norm,heads", [
    ("mul", "layer", 1), ("add", "none", 2), ("both", "layer", 2), ("mul", "instance", 1)])
def test_latent_keys_match_naive_attention(rng, integration, norm, heads):
    module = att.Attention(8, num_heads=heads, keys="latents", integration=integration, norm=norm)
    x, y, xp, yp, variables = _setup(rng, module)
    out, probs = module.apply(variables, x, y, xp, yp)
    want, want_probs = np_attention(np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(xp, np.float64),
                                    np.asarray(yp, np.float64), _np(variables["params"]), heads, "latents",
                                    integration, norm)
    assert probs.shape == (2, heads, 6, 3)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("iters,heads", [(1, 1), (2, 2)])
def test_centroid_keys_match_naive_attention(rng, iters, heads):
    module = att.Attention(8, num_heads=heads, keys="centroids", kmeans_iters=iters, integration="mul", norm="layer")
    x, y, xp, yp, variables = _setup(rng, module)
    variables["params"]["att_weight"] = (1 + 0.2 * rng.normal(size=(heads, 1, 16 // heads))).astype(np.float32)
    out, probs = module.apply(variables, x, y, xp, yp)
    want, want_probs = np_attention(np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(xp, np.float64),
                                    None, _np(variables["params"]), heads, "centroids", "mul", "layer", iters)
    np.testing.assert_allclose(probs, want_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_centroid_attention_map_ignores_the_latents_and_latent_keys_do_not(rng):
    cent = att.Attention(8, keys="centroids", integration="mul", norm="layer")
    x, y, xp, yp, variables = _setup(rng, cent)
    assert "to_keys" not in variables["params"] and "to_pos_map" not in variables["params"]
    y2 = y + jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    _, a1 = cent.apply(variables, x, y, xp, yp)
    out2, a2 = cent.apply(variables, x, y2, xp, yp)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(cent.apply(variables, x, y, xp, yp)[0], out2)  # latents still reach X via the values

    lat = att.Attention(8, keys="latents", integration="mul", norm="layer")
    x, y, xp, yp, variables = _setup(rng, lat)
    _, b1 = lat.apply(variables, x, y, xp, yp)
    _, b2 = lat.apply(variables, x, y2, xp, yp)
    assert not np.allclose(b1, b2)
    grads = jax.grad(lambda p: jnp.sum(lat.apply({"params": p}, x, y, xp, yp)[0] ** 2))(variables["params"])
    assert float(jnp.abs(grads["to_keys"]["kernel"]).max()) > 0
    assert float(jnp.abs(grads["to_pos_map"]["kernel"]).max()) > 0


def test_zero_modulation_leaves_the_normalised_features(rng):
    module = att.Attention(8, keys="centroids", integration="mul", norm="layer")
    x, y, xp, yp, variables = _setup(rng, module)
    variables["params"]["modulation"] = jax.tree.map(jnp.zeros_like, variables["params"]["modulation"])
    out, _ = module.apply(variables, x, y, xp, yp)
    np.testing.assert_allclose(out, att.rms_norm(x), rtol=1e-6)


def test_rms_norm_and_attention_norm(rng):
    x = jnp.asarray(3.0 + rng.normal(size=(2, 5, 8)), jnp.float32)
    y = att.rms_norm(x)
    np.testing.assert_allclose(jnp.mean(y ** 2, axis=-1), 1.0, rtol=1e-5)
    assert float(jnp.abs(jnp.mean(y, axis=-1)).min()) > 0.5   # not centred
    np.testing.assert_allclose(att.attention_norm(x, "layer", "mul"), y, rtol=1e-6)
    full = att.attention_norm(x, "layer", "both")
    np.testing.assert_allclose(jnp.mean(full, -1), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.mean(full ** 2, -1), 1.0, rtol=1e-4)
    inst = att.attention_norm(x, "instance", "add")
    np.testing.assert_allclose(jnp.mean(inst, axis=1), 0.0, atol=1e-5)
    np.testing.assert_array_equal(att.attention_norm(x, "none", "mul"), x)
    with pytest.raises(ValueError, match="attention norm must be one of layer, instance, none, got 'batch'"):
        att.attention_norm(x, "batch", "mul")


def test_sinusoidal_grid_layout():
    r, d = 4, 8
    grid = att.sinusoidal_grid(r, d).reshape(r, r, d)                       # row-major: [y, x]
    np.testing.assert_array_equal(grid[:, :, :d // 2], np.broadcast_to(grid[:1, :, :d // 2], (r, r, d // 2)))
    np.testing.assert_array_equal(grid[:, :, d // 2:], np.broadcast_to(grid[:, :1, d // 2:], (r, r, d // 2)))
    c = np.linspace(-1, 1, r)
    y, x = 2, 3
    freq = 10000.0 ** (4 * np.arange(d // 4) / d)
    want = np.concatenate([np.sin(c[x] / freq), np.cos(c[x] / freq), np.sin(c[y] / freq), np.cos(c[y] / freq)])
    np.testing.assert_allclose(att.sinusoidal_grid(r, d)[y * r + x], want, rtol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        att.sinusoidal_grid(4, 6)


def test_dropout_drops_entries_and_whole_latent_columns(rng):
    probs = jnp.ones((4, 2, 64, 8))
    out = np.asarray(att.attention_dropout(probs, 0.5, jax.random.PRNGKey(0)))
    scale = 1 / 0.75 ** 2
    np.testing.assert_allclose(out[out != 0], scale, rtol=1e-6)
    dead = (out == 0).all(axis=2)                                           # (B, h, T): a latent dropped everywhere
    assert dead.any() and not dead.all()
    np.testing.assert_allclose(out.mean(), 1.0, atol=0.1)                  # inverted: expectation kept

    module = att.Attention(8, keys="latents", integration="mul", norm="layer", dropout=0.5)
    x, y, xp, yp, variables = _setup(rng, module)
    a = module.apply(variables, x, y, xp, yp)                               # eval: deterministic, no rng needed
    np.testing.assert_array_equal(a[0], module.apply(variables, x, y, xp, yp)[0])
    b = module.apply(variables, x, y, xp, yp, deterministic=False, dropout_key=jax.random.PRNGKey(1))
    c = module.apply(variables, x, y, xp, yp, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(a[1], b[1]) and c[1].shape == b[1].shape


def test_latent_update_shapes(rng):
    module = att.LatentUpdate()
    latents = jnp.asarray(rng.normal(size=(2, 3, 8)), jnp.float32)
    image = jnp.asarray(rng.normal(size=(2, 16, 12)), jnp.float32)
    pos, grid = jnp.asarray(rng.uniform(size=(3, 8)), jnp.float32), jnp.asarray(att.sinusoidal_grid(4, 8))
    variables = numpy_variables(module, latents, image, pos, grid)
    assert variables["params"]["attention"]["to_keys"]["kernel"].shape == (12, 8)  # keys from the image
    assert module.apply(variables, latents, image, pos, grid).shape == (2, 3, 8)


def test_invalid_attention_options_are_clear_errors(rng):
    with pytest.raises(ValueError, match="keys must be one of centroids, latents, got 'pixels'"):
        _setup(rng, att.Attention(8, keys="pixels"))
    with pytest.raises(ValueError, match="dim = 8 must be divisible by num_heads = 3"):
        _setup(rng, att.Attention(8, num_heads=3))


# --- Linear cost: no (N, N) intermediate -------------------------------------------------------------

def _avals(jaxpr):
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield var.aval
        for param in eqn.params.values():
            for sub in (param if isinstance(param, (list, tuple)) else [param]):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _avals(inner)


def _assert_no_pixel_pair(fn, *args, pixels):
    avals = list(_avals(jax.make_jaxpr(fn)(*args).jaxpr))
    assert avals
    bad = [a.shape for a in avals if sum(1 for s in getattr(a, "shape", ()) if s >= pixels) >= 2]
    assert not bad, f"intermediates with two pixel-count axes: {bad[:3]}"
    # The lowered (StableHLO) program agrees: no tensor type with two pixel-count dimensions.
    text = jax.jit(fn).lower(*args).as_text()
    shapes = [[int(d) for d in m.split("x") if d] for m in re.findall(r"tensor<((?:\d+x)+)", text)]
    assert shapes and not [s for s in shapes if sum(1 for d in s if d >= pixels) >= 2]


def test_attention_at_64x64_with_16_latents_is_linear_in_pixels():
    n = 64 * 64
    for keys, iters in (("latents", 1), ("centroids", 2)):
        module = att.Attention(32, keys=keys, kmeans_iters=iters, integration="mul", norm="layer", dropout=0.12)
        x, y = jax.ShapeDtypeStruct((2, n, 32), jnp.float32), jax.ShapeDtypeStruct((2, 16, 32), jnp.float32)
        xp, yp = jax.ShapeDtypeStruct((n, 32), jnp.float32), jax.ShapeDtypeStruct((16, 32), jnp.float32)
        variables = jax.eval_shape(lambda *a: module.init(jax.random.PRNGKey(0), *a), x, y, xp, yp)
        fn = lambda v, x, y, xp, yp: module.apply(v, x, y, xp, yp, deterministic=False,  # noqa: E731
                                                  dropout_key=jax.random.PRNGKey(0))
        _assert_no_pixel_pair(fn, variables, x, y, xp, yp, pixels=n)
    # Negative control: the check does catch a materialised (N, N) product.
    x = jax.ShapeDtypeStruct((2, n, 8), jnp.float32)
    with pytest.raises(AssertionError, match="two pixel-count axes"):
        _assert_no_pixel_pair(lambda x: jnp.einsum("bnc,bmc->bnm", x, x).sum(), x, pixels=n)


def test_celeba64_generator_forward_has_no_pixel_by_pixel_array():
    config = models.resolve(importlib.import_module("configs.gansformer_celeba64").get_config())
    assert config.model.gansformer.num_latents == 16 and config.model.resolution == 64
    generator, _ = models.build(config)
    z = jax.ShapeDtypeStruct((2, config.model.z_dim), jnp.float32)
    variables = jax.eval_shape(lambda: generator.init(jax.random.PRNGKey(0), jnp.zeros(z.shape)))
    fn = lambda v, z: generator.apply(v, z, train=True, mutable=["batch_stats"])  # noqa: E731
    avals = list(_avals(jax.make_jaxpr(fn)(variables, z).jaxpr))
    assert any(64 * 64 in getattr(a, "shape", ()) for a in avals)          # the 64x64 layers were traced
    bad = [a.shape for a in avals if sum(1 for s in getattr(a, "shape", ()) if s >= 1024) >= 2]
    assert not bad, f"intermediates with two pixel-count axes: {bad[:3]}"


# --- SAGAN self-attention (the GIU-GAN paper's SAGAN baseline) ---------------------------------------------

def test_sagan_self_attention_matches_numpy_softmax_attention(x64):
    from qgan_jax.layers.attention import SelfAttention
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 3, 16))
    layer = SelfAttention(reduction=8)
    shapes = jax.eval_shape(layer.init, jax.random.key(0), jnp.asarray(x))
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.5, jnp.float64), shapes)
    y = np.asarray(layer.apply(params, jnp.asarray(x)))
    p = jax.tree.map(np.asarray, params["params"])
    flat = x.reshape(2, 12, 16)
    q = flat @ p["query"]["kernel"][0, 0] + p["query"]["bias"]
    k = flat @ p["key"]["kernel"][0, 0] + p["key"]["bias"]
    v = flat @ p["value"]["kernel"][0, 0] + p["value"]["bias"]
    expected = np.zeros_like(flat)
    for n in range(2):
        for i in range(12):
            scores = np.array([q[n, i] @ k[n, j] for j in range(12)])
            weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
            expected[n, i] = flat[n, i] + p["gamma"] * (weights[:, None] * v[n]).sum(axis=0)
    np.testing.assert_allclose(y, expected.reshape(x.shape), rtol=1e-10, atol=1e-10)


def test_sagan_self_attention_is_identity_at_init_and_checks_channels():
    from qgan_jax.layers.attention import SelfAttention
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 16)), jnp.float32)
    layer = SelfAttention(spectral_norm=True)
    variables = layer.init(jax.random.key(0), x, train=False)
    np.testing.assert_array_equal(layer.apply(variables, x, train=False), x)
    with pytest.raises(ValueError, match="channels = 12 is not divisible by reduction = 8"):
        layer.init(jax.random.key(0), jnp.zeros((1, 4, 4, 12)))
