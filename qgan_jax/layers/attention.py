"""GANsformer attention: bipartite (image <-> latents) and latent self-attention, linear in the pixel count.

:class:`Attention` is one transformer layer from a "from" set (B, F, Cf) to a "to" set (B, T, Ct): queries from
"from" (+ positional term), values from "to", softmax over the T "to" elements, context = A v, integrated into
the normalised "from" features. Scores are (B, heads, F, T): for image queries and K latents that is
(B, h, N, K), so the cost is O(N K C) and no (N, N) array exists.

Key sources (``keys``):
  'latents'    the paper's simplex attention: ``S = (q0 + P_X W_px) (Y W_k + P_Y W_py)^T / sqrt(c)``.
  'centroids'  the released code's default (``--kmeans``, 1 iteration, non-iterative): pixel descriptors
               ``F = [q0 ; q - q0]`` per head scored against learned centroids ``C (h, T, 2c)`` with a learned
               per-channel weight: ``S = (F * w_att) C^T / sqrt(c)``. No key projection exists in this mode (the
               released one gets no gradient), so given X the map A does not depend on the latents.
               ``kmeans_iters > 1`` recomputes the centroids from the soft assignment ``(A / sum_F A)^T F``.

Integration (``integration``) with the normalisation ``norm`` of the "from" features, StyleGAN-free:
  'mul'  ``X_out = w(X) * (1 + ctx W_m + b_m)`` (released default; w = RMS norm over channels, no centring).
  'add'  ``X_out = w(X) + ctx W_m + b_m`` (w centres only).
  'both' ``X_out = w(X) * (1 + g) + b``, ``[g; b] = ctx W_m + b_m`` (w = full layer norm without affine: the
         paper's ``gamma(a) w(X) + beta(a)`` up to the identity-at-init ``1 + g``).
``norm``: 'layer' (over channels, per position), 'instance' (over positions, per channel), 'none'.
Attention dropout ``p`` is two inverted dropouts of ``p/2``: on entries of A and on whole "to" columns.

All projections are equalised-lr dense layers (:class:`qgan_jax.layers.stylegan.EqualizedDense`).
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from qgan_jax.layers.factory import LayerFactory
from qgan_jax.layers.normalization import build_layer
from qgan_jax.layers.stylegan import EqualizedDense

Array = jax.Array

KEY_SOURCES = ("centroids", "latents")
INTEGRATIONS = ("mul", "add", "both")
NORMS = ("layer", "instance", "none")


def sinusoidal_grid(resolution: int, dim: int) -> np.ndarray:
    """The released 2-D sinusoidal grid encoding, ``(resolution**2, dim)`` float32, row-major (index y*r + x).

    ``c = linspace(-1, 1, r)``, ``f_i = 10000^(4 i / dim)`` for i < dim/4; the row at (y, x) is
    ``[sin(c_x / f), cos(c_x / f), sin(c_y / f), cos(c_y / f)]`` (the first half varies along columns).
    """
    if dim % 4 or dim < 4:
        raise ValueError(f"sinusoidal_grid: dim = {dim} must be a positive multiple of 4.")
    c = np.linspace(-1.0, 1.0, resolution)[:, None]
    freq = np.power(10000.0, 4.0 * np.arange(dim // 4) / dim)
    sin, cos = np.sin(c / freq), np.cos(c / freq)                       # (r, dim/4)
    xs = np.concatenate([sin, cos], axis=-1)[None, :, :].repeat(resolution, axis=0)   # varies with x
    ys = np.concatenate([sin, cos], axis=-1)[:, None, :].repeat(resolution, axis=1)   # varies with y
    return np.concatenate([xs, ys], axis=-1).reshape(resolution * resolution, dim).astype(np.float32)


def rms_norm(x: Array, axis: int = -1, eps: float = 1e-8) -> Array:
    """``x / sqrt(mean(x^2, axis) + eps)``: no centring, no affine."""
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True) + eps)).astype(x.dtype)


def attention_norm(x: Array, norm: str, integration: str, eps: float = 1e-8) -> Array:
    """The released ``att_norm`` on (B, N, C): centre if the integration is additive ('add', 'both'), RMS-scale if
    multiplicative ('mul', 'both'), over channels ('layer') or positions ('instance'); 'none' is the identity."""
    if norm not in NORMS:
        raise ValueError(f"attention norm must be one of {', '.join(NORMS)}, got {norm!r}.")
    if integration not in INTEGRATIONS:
        raise ValueError(f"attention integration must be one of {', '.join(INTEGRATIONS)}, got {integration!r}.")
    if norm == "none":
        return x
    axis = -1 if norm == "layer" else -2
    x32 = x.astype(jnp.float32)
    if integration in ("add", "both"):
        x32 = x32 - jnp.mean(x32, axis=axis, keepdims=True)
    if integration in ("mul", "both"):
        x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True) + eps)
    return x32.astype(x.dtype)


def attention_dropout(probs: Array, rate: float, key: Array) -> Array:
    """Two inverted dropouts of ``rate / 2`` on (B, h, F, T): individual entries, then whole "to" columns."""
    half = rate / 2.0
    if half <= 0.0:
        return probs
    k_entries, k_columns = jax.random.split(key)
    b, h, f, t = probs.shape
    keep = jax.random.bernoulli(k_entries, 1.0 - half, (b * h * f * t,)).reshape(probs.shape)
    keep_col = jax.random.bernoulli(k_columns, 1.0 - half, (b * h * t,)).reshape(b, h, 1, t)
    scale = 1.0 / (1.0 - half)
    return probs * keep * keep_col * (scale * scale)


class Attention(nn.Module):
    """One transformer layer from ``x`` (B, F, Cf) to ``y`` (B, T, Ct); see the module docstring.

    ``__call__(x, y, x_pos (F, P) | None, y_pos (T, P) | None, *, deterministic=True, dropout_key=None)``
    -> ``(x_out (B, F, Cf), probs (B, heads, F, T))``. ``dim``: the query / key / value width (divisible by
    ``num_heads``). Params: ``to_queries``, ``to_values``, ``modulation``; ``from_pos_map`` when x_pos is given;
    'latents' keys: ``to_keys`` and (with y_pos) ``to_pos_map``; 'centroids': ``centroids (1, h, T, 2c)``
    (N(0, 1)) and ``att_weight (h, 1, 2c)`` (ones). Dropout uses ``dropout_key`` or the 'dropout' rng stream.
    """
    dim: int
    num_heads: int = 1
    keys: str = "latents"
    kmeans_iters: int = 1
    integration: str = "add"
    norm: str = "none"
    dropout: float = 0.0

    def _check(self):
        owner = f"Attention '{self.name}'" if self.name else "Attention"
        if self.keys not in KEY_SOURCES:
            raise ValueError(f"{owner}: keys must be one of {', '.join(KEY_SOURCES)}, got {self.keys!r}.")
        if self.integration not in INTEGRATIONS:
            raise ValueError(f"{owner}: integration must be one of {', '.join(INTEGRATIONS)}, "
                             f"got {self.integration!r}.")
        if self.norm not in NORMS:
            raise ValueError(f"{owner}: norm must be one of {', '.join(NORMS)}, got {self.norm!r}.")
        if self.num_heads < 1 or self.dim % self.num_heads:
            raise ValueError(f"{owner}: dim = {self.dim} must be divisible by num_heads = {self.num_heads}.")
        if self.kmeans_iters < 1:
            raise ValueError(f"{owner}: kmeans_iters must be >= 1, got {self.kmeans_iters}.")

    @nn.compact
    def __call__(self, x: Array, y: Array, x_pos: Optional[Array] = None, y_pos: Optional[Array] = None, *,
                 deterministic: bool = True, dropout_key: Optional[Array] = None) -> tuple[Array, Array]:
        self._check()
        b, f, _ = x.shape
        t = y.shape[1]
        h, c = self.num_heads, self.dim // self.num_heads
        heads = lambda a, n: a.reshape(a.shape[0], n, h, c)  # noqa: E731  (B, n, h, c)

        q0 = EqualizedDense(self.dim, name="to_queries")(x)                       # (B, F, dim)
        q = q0 + EqualizedDense(self.dim, name="from_pos_map")(x_pos)[None] if x_pos is not None else q0
        v = heads(EqualizedDense(self.dim, name="to_values")(y), t)               # (B, T, h, c)
        scale = 1.0 / math.sqrt(c)

        if self.keys == "latents":
            k = EqualizedDense(self.dim, name="to_keys")(y)
            if y_pos is not None:
                k = k + EqualizedDense(self.dim, name="to_pos_map")(y_pos)[None]
            scores = jnp.einsum("bfhc,bthc->bhft", heads(q, f), heads(k, t)) * scale
            probs = jax.nn.softmax(scores, axis=-1)
        else:
            descriptors = jnp.concatenate([heads(q0, f), heads(q - q0, f)], axis=-1)   # (B, F, h, 2c)
            centroids = self.param("centroids", lambda key, s: jax.random.normal(key, (math.prod(s),)).reshape(s),
                                   (1, h, t, 2 * c))
            att_weight = self.param("att_weight", nn.initializers.ones_init(), (h, 1, 2 * c))
            weighted = descriptors * jnp.transpose(att_weight, (1, 0, 2))[None]     # (B, F, h, 2c)
            centroids = jnp.broadcast_to(centroids, (b, h, t, 2 * c))
            probs = None
            for it in range(self.kmeans_iters):
                if it > 0:
                    assign = probs / (jnp.sum(probs, axis=2, keepdims=True) + 1e-8)        # (B, h, F, T)
                    centroids = jnp.einsum("bhft,bfhc->bhtc", assign, descriptors)
                scores = jnp.einsum("bfhc,bhtc->bhft", weighted, centroids) * scale
                probs = jax.nn.softmax(scores, axis=-1)
                if not deterministic and self.dropout > 0:
                    probs = attention_dropout(probs, self.dropout, self._dropout_key(dropout_key, it))
            context = jnp.einsum("bhft,bthc->bfhc", probs, v).reshape(b, f, self.dim)
            return self._integrate(x, context), probs

        if not deterministic and self.dropout > 0:
            probs = attention_dropout(probs, self.dropout, self._dropout_key(dropout_key, 0))
        context = jnp.einsum("bhft,bthc->bfhc", probs, v).reshape(b, f, self.dim)
        return self._integrate(x, context), probs

    def _dropout_key(self, key: Optional[Array], it: int) -> Array:
        key = self.make_rng("dropout") if key is None else key
        return jax.random.fold_in(key, it)

    def _integrate(self, x: Array, context: Array) -> Array:
        cf = x.shape[-1]
        control = EqualizedDense(2 * cf if self.integration == "both" else cf, name="modulation")(context)
        x = attention_norm(x, self.norm, self.integration)
        if self.integration == "mul":
            return x * (1.0 + control)
        if self.integration == "add":
            return x + control
        gain, bias = jnp.split(control, 2, axis=-1)
        return x * (1.0 + gain) + bias


class LatentUpdate(nn.Module):
    """Bottom-up (image -> latents) update of the paper's duplex attention (the TF ``--g-img2ltnt`` form).

    ``__call__(latents (B, K, d), image (B, N, C), latent_pos (K, d) | None, grid_pos (N, P))`` -> (B, K, d):
    ``t = latents + FC(ctx)``, ctx = additive un-normalised attention from the latents to the image (grid
    encoding on the image keys); then ``lrelu(FC_b(FC_a_lrelu(t)) + latents, 0.2)``.
    """
    num_heads: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, latents: Array, image: Array, latent_pos: Optional[Array], grid_pos: Optional[Array], *,
                 deterministic: bool = True, dropout_key: Optional[Array] = None) -> Array:
        d = latents.shape[-1]
        t, _ = Attention(d, num_heads=self.num_heads, keys="latents", integration="add", norm="none",
                         dropout=self.dropout, name="attention")(
            latents, image, latent_pos, grid_pos, deterministic=deterministic, dropout_key=dropout_key)
        u = EqualizedDense(d, act="lrelu", name="fc0")(t)
        u = EqualizedDense(d, name="fc1")(u)
        return jax.nn.leaky_relu(u + latents, 0.2)


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al., 2019) over the pixels of an NHWC map: ``y = x + gamma * o``.

    ``q, k = x W_q, x W_k`` (1x1 convs C -> C/reduction, with bias), ``v = x W_v`` (C -> C),
    ``A = softmax_over_keys(q k^T)`` (N, HW, HW), ``o = A v``; ``gamma`` is a scalar initialised to 0, so the
    block starts as the identity. Unlike :class:`Attention` this materialises (HW x HW) scores: it is meant
    for the small maps of the SAGAN baseline (e.g. 16x16). The 1x1 convs are ``layers``' algebra with its dtype
    and the layer's own initialiser (as SAGAN), spectrally normalised when ``spectral_norm`` (state in
    ``batch_stats``).
    Submodules: ``query``, ``key``, ``value``; param ``gamma ()``.
    """
    reduction: int = 8
    layers: LayerFactory = LayerFactory()
    spectral_norm: bool = False

    def _conv(self, features: int, name: str):
        return build_layer(lambda **p: self.layers.algebra.conv(features, (1, 1), padding=0, dtype=self.layers.dtype,
                                                                **p), name, self.spectral_norm)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """x: (N, H, W, C) -> (N, H, W, C)."""
        n, h, w, c = x.shape
        if c % self.reduction:
            raise ValueError(f"SelfAttention: channels = {c} is not divisible by reduction = {self.reduction}.")
        q = self._conv(c // self.reduction, "query")(x, train).reshape(n, h * w, -1)
        k = self._conv(c // self.reduction, "key")(x, train).reshape(n, h * w, -1)
        v = self._conv(c, "value")(x, train).reshape(n, h * w, c)
        scores = jnp.einsum("nqc,nkc->nqk", q, k)
        softmax_dtype = jnp.promote_types(scores.dtype, jnp.float32)  # at least float32 (bf16 activations)
        o = jnp.einsum("nqk,nkc->nqc", jax.nn.softmax(scores.astype(softmax_dtype), axis=-1).astype(v.dtype), v)
        gamma = self.param("gamma", nn.initializers.zeros_init(), ())
        return x + gamma.astype(x.dtype) * o.reshape(n, h, w, c)
