"""GANsformer (Hudson & Zitnick 2021, dorarad/gansformer as released; ``docs/decisions.md#gansformer``).

Latents. ``z`` of the model contract is ``(N, z_dim)`` with ``z_dim = (K + 1) * d``: it is read as
``z.reshape(N, K + 1, d)``, components ``0 .. K-1`` the local latents and component ``K`` (the last) the global
one. The trainer's ``z ~ N(0, I)`` of shape ``(N, z_dim)`` is therefore exactly upstream's ``(N, K+1, d)`` draw.

Generator: PT-style input normalisation (locals jointly over (K, d), the global over d; ``z_norm =
'per_component'`` is the TF form), two residual mapping MLPs (lr multiplier 0.01; the local one shared across
latents, with additive latent self-attention before each residual unit), ``w_avg`` (EMA 0.995, in
``batch_stats``), broadcast to ``num_ws(R) = 2 log2 R - 1`` layer slots, style mixing, truncation; synthesis
from a learned 4x4 constant with StyleGAN2 resnet blocks, where every SynthesisLayer is
``modulated conv (global latent) -> attention (local latents) -> noise -> bias + lrelu``; at the last resolution
``conv_last`` (modulated, no bias / noise / activation / attention) and ToRGB (1x1 modulated, no demodulation).

Discriminator: the StyleGAN2 resnet D with minibatch stddev (:class:`qgan_jax.layers.stylegan.ResnetDiscriminator`).

``generator.apply(variables, z, train=..., mutable=['batch_stats'], rngs=..., **kwargs)`` keywords:
  truncation_psi (1.0), truncation_cutoff (None: every slot): ``w <- w_avg + psi (w - w_avg)``; sampling only.
  noise_mode ('random' | 'const' | 'none'); style_mixing_prob (None = the module's, applied only when train);
  ws ((N, K+1, num_ws, d) to bypass the mapping); return_aux (-> ``(images, {'ws', 'attention'})``).
Randomness: rng streams 'noise', 'dropout' (attention dropout, train only) and 'mixing' (style mixing, train
only). The trainer passes all three (``models.RNG_STREAMS``, one key per D step) and reuses that forward's fake for
the generator update through its VJP, so G's gradient sees the very same noise, dropout and mixing. A stream that
is not supplied (e.g. a bare ``apply`` in a test) is derived from the bits of z (:func:`z_key`): per-sample
randomness that is a fixed function of z.

``train=True`` updates ``w_avg`` when ``batch_stats`` is mutable. Output: ``output_activation`` 'clip' (default:
forward clip to [-1, 1] with an identity gradient, i.e. the released linear output's gradient under the model
contract), 'tanh', or 'linear' (as released; may leave [-1, 1]).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from qgan_jax.layers.algebra import REAL, Algebra
from qgan_jax.layers import attention as att
from qgan_jax.layers import stylegan as sg

Array = jax.Array

Z_NORMS = ("joint", "per_component")
OUTPUT_ACTIVATIONS = ("clip", "tanh", "linear")
STREAMS = {"noise": 1, "dropout": 2, "mixing": 3}


def default_config() -> ml_collections.ConfigDict:
    """``config.model.gansformer``: the released GANformer defaults (FFHQ-like: K = 16, d = 32)."""
    c = ml_collections.ConfigDict()
    c.num_latents = 16               # K local latents (--components-num); the global latent is one more.
    c.latent_dim = 32                # d per latent (local and global) = latent-size / K; z_dim = (K + 1) d.
    c.channel_base = 32768           # Channels at resolution r: min(channel_base // r, channel_max) (G and D).
    c.channel_max = 512
    c.attention = True               # False: the same generator without attention (StyleGAN2-like baseline).
    c.attention_start_res = 0        # Attention in layers with attention_start_res <= log2(r) < attention_end_res.
    c.attention_end_res = 8
    c.keys = "centroids"             # centroids (released --kmeans default) | latents (the paper's simplex keys).
    c.kmeans_iters = 1               # centroids: > 1 recomputes the centroids from the soft assignment.
    c.integration = "mul"            # mul (released) | add | both (with norm='layer': the paper's gamma/beta form).
    c.norm = "layer"                 # layer (over channels) | instance (over positions) | none.
    c.num_heads = 1
    c.attention_dropout = 0.12       # Two dropouts of half this rate (entries, latent columns); train only.
    c.use_pos = True                 # Learned latent embeddings P_Y (K, d) on the keys and in the mapping attention.
    c.duplex = False                 # Bottom-up image -> latents update after every attention layer (paper / TF).
    c.style = True                   # Global-latent style modulation (False: plain convs, the CLEVR setting).
    c.noise = True                   # Per-pixel noise inputs.
    c.mapping_layers = 8             # Nominal mapping depth (resnet: (8 + 1) // 2 = 4 residual units).
    c.mapping_lr_multiplier = 0.01
    c.mapping_resnet = True
    c.mapping_self_attention = True  # Latent self-attention in the local mapping (--mapping-ltnt2ltnt).
    c.z_norm = "joint"               # joint (PT: locals over (K, d)) | per_component (TF: each over d).
    c.w_avg_beta = 0.995             # EMA of the mean w, for truncation.
    c.style_mixing_prob = 0.9        # Applied by the generator in train mode.
    c.resample_filter = (1, 3, 3, 1)  # FIR taps for up / down-sampling ((1, 1): nearest / box).
    c.output_activation = "clip"     # clip (straight-through) | tanh | linear (released; may leave [-1, 1]).
    c.d_algebra = ""                 # Discriminator conv algebra; '' = model.algebra.
    c.mbstd_group_size = 4
    c.mbstd_num_channels = 0         # 0 = the algebra's channel multiple (1 for real, 4 for quaternion).
    c.ema_half_life_kimg = 10.0      # G EMA half-life; configs set train.ema_decay from it.
    return c


# ---------------------------------------------------------------------------------------------------
# Pure helpers (also for the trainer)
# ---------------------------------------------------------------------------------------------------

def num_ws(resolution: int) -> int:
    """Layer slots of the w broadcast: 1 (4x4) + 2 per block 8 .. R + conv_last + ToRGB = 2 log2 R - 1."""
    return 2 * int(round(math.log2(resolution))) - 1


def attention_layer_count(resolution: int, start_res: int = 0, end_res: int = 8) -> int:
    """SynthesisLayers with attention (every one but conv_last within the log2 range): 7 at 32 px, 9 at 64 px."""
    count = 0
    for log2 in range(2, int(round(math.log2(resolution))) + 1):
        if start_res <= log2 < end_res:
            count += 1 if log2 == 2 else 2
    return count


def z_key(z: Array, salt: int = 0) -> Array:
    """A PRNG key that is a deterministic function of the bits of ``z`` (and ``salt``)."""
    bits = jax.lax.bitcast_convert_type(jax.lax.stop_gradient(z).astype(jnp.float32), jnp.uint32).reshape(-1)
    weights = jnp.arange(bits.shape[0], dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(0x9E3779B9)
    digest = jnp.sum(bits * weights, dtype=jnp.uint32) ^ jnp.sum(bits ^ (weights >> 7), dtype=jnp.uint32)
    return jax.random.fold_in(jax.random.PRNGKey(salt), digest)


def straight_through_clip(x: Array) -> Array:
    """Forward ``clip(x, -1, 1)``, backward identity (the gradient of the released linear output)."""
    return x + jax.lax.stop_gradient(jnp.clip(x, -1.0, 1.0) - x)


def truncate(ws: Array, w_avg: Array, psi: Any, cutoff: Optional[int] = None) -> Array:
    """``w_avg + psi (ws - w_avg)`` on the slots ``< cutoff`` (all when None). ws: (N, K+1, num_ws, d)."""
    truncated = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return truncated
    slots = jnp.arange(ws.shape[2])[None, None, :, None]
    return jnp.where(slots < cutoff, truncated, ws)


def style_mixing_cutoff(key: Array, num_slots: int, prob: float) -> Array:
    """int32 (): with probability ``prob`` a slot index in [1, num_slots), else num_slots (no mixing); one per
    batch, as StyleGAN2."""
    k_cut, k_use = jax.random.split(key)
    cutoff = jax.random.randint(k_cut, (), 1, max(num_slots, 2))
    return jnp.where(jax.random.uniform(k_use, ()) < prob, cutoff, num_slots).astype(jnp.int32)


def mix_styles(ws: Array, ws2: Array, cutoff: Array) -> Array:
    """Slots ``>= cutoff`` of ws (N, K+1, num_ws, d) taken from ws2."""
    slots = jnp.arange(ws.shape[2])[None, None, :, None]
    return jnp.where(slots < cutoff, ws, ws2)


def ema_decay_from_half_life(half_life_kimg: float, batch_size: int) -> float:
    """Per-step EMA decay for a half-life in thousands of images: ``0.5 ** (batch / (1000 half_life))``."""
    if half_life_kimg <= 0:
        return 0.0
    return 0.5 ** (batch_size / (1000.0 * half_life_kimg))


def attention_free_twin(config: Any) -> Optional[Any]:
    """The same GANsformer config with attention off (a StyleGAN2-style generator), or None if not applicable."""
    model = config.model
    if model.name != "gansformer" or "gansformer" not in model or not model.gansformer.attention:
        return None
    twin = copy.deepcopy(config)
    with twin.unlocked():
        twin.model.gansformer.attention = False
    return twin


# ---------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AttentionSettings:
    """Options of the synthesis attention (see :class:`qgan_jax.layers.attention.Attention`)."""
    keys: str = "centroids"
    kmeans_iters: int = 1
    integration: str = "mul"
    norm: str = "layer"
    num_heads: int = 1
    dropout: float = 0.12
    use_pos: bool = True


def _normalize(x: Array, axes: Sequence[int]) -> Array:
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=tuple(axes), keepdims=True) + 1e-8)


class MappingMLP(nn.Module):
    """(N, n, d) -> (N, n, d), weights shared over the n latents. resnet: ``(layers + 1) // 2`` units
    ``u <- lrelu(FC_b(FC_a_lrelu(SA(u))) + u, 0.2)`` (skip taken before the optional self-attention), then an
    output FC with lrelu; otherwise ``layers`` FC-lrelu layers and the output FC. lr multiplier on every FC."""
    num_layers: int = 8
    lr_multiplier: float = 0.01
    resnet: bool = True
    self_attention: bool = False
    num_heads: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, u: Array, pos: Optional[Array] = None, *, deterministic: bool = True,
                 dropout_key: Optional[Array] = None) -> Array:
        d, lrmul = u.shape[-1], self.lr_multiplier
        units = (self.num_layers + 1) // 2 if self.resnet else self.num_layers
        for i in range(units):
            skip = u
            if self.self_attention:
                key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
                u, _ = att.Attention(d, num_heads=self.num_heads, keys="latents", integration="add", norm="none",
                                     dropout=self.dropout, name=f"sa{i}")(
                    u, u, pos, pos, deterministic=deterministic, dropout_key=key)
            if self.resnet:
                h = sg.EqualizedDense(d, lr_multiplier=lrmul, act="lrelu", name=f"l{i}_fc0")(u)
                h = sg.EqualizedDense(d, lr_multiplier=lrmul, name=f"l{i}_fc1")(h)
                u = jax.nn.leaky_relu(h + skip, sg.LRELU_SLOPE)
            else:
                u = sg.EqualizedDense(d, lr_multiplier=lrmul, act="lrelu", name=f"l{i}")(u)
        return sg.EqualizedDense(d, lr_multiplier=lrmul, act="lrelu", name="out")(u)


class MappingNetwork(nn.Module):
    """z (N, K+1, d) -> w (N, K+1, d): normalised inputs, a global MLP on the last component and a shared local
    MLP (with latent self-attention) on the K others (skipped when ``map_locals`` is False)."""
    num_latents: int
    num_layers: int = 8
    lr_multiplier: float = 0.01
    resnet: bool = True
    self_attention: bool = True
    map_locals: bool = True
    num_heads: int = 1
    dropout: float = 0.12
    z_norm: str = "joint"

    @nn.compact
    def __call__(self, z: Array, latent_pos: Optional[Array], *, deterministic: bool = True,
                 dropout_key: Optional[Array] = None) -> Array:
        k = self.num_latents
        locals_, global_ = z[:, :k], z[:, k:]
        global_ = _normalize(global_, (2,))
        locals_ = _normalize(locals_, (1, 2) if self.z_norm == "joint" else (2,)) if k else locals_
        kw = dict(num_layers=self.num_layers, lr_multiplier=self.lr_multiplier, resnet=self.resnet)
        global_ = MappingMLP(**kw, name="global_mlp")(global_)
        if k and self.map_locals:
            locals_ = MappingMLP(**kw, self_attention=self.self_attention, num_heads=self.num_heads,
                                 dropout=self.dropout, name="local_mlp")(
                locals_, latent_pos, deterministic=deterministic, dropout_key=dropout_key)
        return jnp.concatenate([locals_, global_], axis=1)


class SynthesisLayer(nn.Module):
    """(N, H, W, in) -> (N, H*up, W*up, features): modulated conv (global latent) -> [attention to the local
    latents] -> [noise] -> [bias + lrelu * gain]. Returns (x, attention probs (N, h, H W, K) or None, updated
    local latents or None): with ``duplex`` the local latents attend back to the attended features (before the
    noise, as the TF ``img2ltnt``) and the update feeds the next layers."""
    features: int
    up: int = 1
    use_attention: bool = False
    duplex: bool = False
    use_noise: bool = True
    use_bias_act: bool = True
    gain: float = 1.0
    modulate: bool = True
    algebra: Algebra = REAL
    resample_filter: Sequence[float] = sg.FIR_FILTER
    settings: AttentionSettings = AttentionSettings()

    @nn.compact
    def __call__(self, x: Array, w_global: Array, w_locals: Optional[Array], latent_pos: Optional[Array], *,
                 noise: Optional[Array] = None, deterministic: bool = True,
                 dropout_key: Optional[Array] = None) -> tuple[Array, Optional[Array], Optional[Array]]:
        x = sg.ModulatedConv(self.features, 3, up=self.up, modulate=self.modulate, algebra=self.algebra,
                             resample_filter=self.resample_filter, name="conv")(x, w_global)
        probs = new_locals = None
        if self.use_attention:
            n, h, w, c = x.shape
            s = self.settings
            grid = jnp.asarray(att.sinusoidal_grid(h, w_locals.shape[-1]))
            pos = latent_pos if s.use_pos else None
            flat, probs = att.Attention(c, num_heads=s.num_heads, keys=s.keys, kmeans_iters=s.kmeans_iters,
                                        integration=s.integration, norm=s.norm, dropout=s.dropout,
                                        name="attention")(
                x.reshape(n, h * w, c), w_locals, grid, pos, deterministic=deterministic, dropout_key=dropout_key)
            x = flat.reshape(n, h, w, c)
            if self.duplex:
                key = None if dropout_key is None else jax.random.fold_in(dropout_key, 7)
                new_locals = att.LatentUpdate(num_heads=s.num_heads, dropout=s.dropout, name="img2ltnt")(
                    w_locals, flat, pos, grid, deterministic=deterministic, dropout_key=key)
        if self.use_noise:
            x = sg.NoiseInput(name="noise")(x, noise)
        if self.use_bias_act:
            bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
            x = sg.bias_act(x, bias, "lrelu", self.gain)
        return x, probs, new_locals


class Generator(nn.Module):
    """z (N, (K+1) d) -> images (N, R, R, channels); see the module docstring for the keywords and rngs."""
    resolution: int = 32
    channels: int = 3
    num_latents: int = 16
    latent_dim: int = 32
    channel_base: int = 32768
    channel_max: int = 512
    algebra: Algebra = REAL
    attention: bool = True
    attention_start_res: int = 0
    attention_end_res: int = 8
    settings: AttentionSettings = AttentionSettings()
    duplex: bool = False
    style: bool = True
    noise: bool = True
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_resnet: bool = True
    mapping_self_attention: bool = True
    z_norm: str = "joint"
    w_avg_beta: float = 0.995
    style_mixing_prob: float = 0.9
    resample_filter: Sequence[float] = sg.FIR_FILTER
    output_activation: str = "clip"

    @property
    def num_ws(self) -> int:
        return num_ws(self.resolution)

    def _key(self, stream: str, z: Array) -> Array:
        if self.has_rng(stream):
            return self.make_rng(stream)
        return z_key(z, STREAMS[stream])

    @nn.compact
    def __call__(self, z: Array, train: bool = False, *, truncation_psi: Any = 1.0,
                 truncation_cutoff: Optional[int] = None, noise_mode: str = "random",
                 style_mixing_prob: Optional[float] = None, ws: Optional[Array] = None,
                 return_aux: bool = False):
        k, d, n = self.num_latents, self.latent_dim, z.shape[0]
        if z.ndim != 2 or z.shape[1] != (k + 1) * d:
            raise ValueError(f"GANsformer generator: z must be (N, (K + 1) * d) = (N, {(k + 1) * d}), got shape "
                             f"{tuple(z.shape)}.")
        if noise_mode not in sg.NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(sg.NOISE_MODES)}, got {noise_mode!r}.")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, got "
                             f"{self.output_activation!r}.")
        slots = self.num_ws
        uses_pos = k > 0 and self.settings.use_pos and (self.attention or self.duplex)
        latent_pos = (self.param("latent_pos", lambda key, s: jax.random.uniform(key, (math.prod(s),)).reshape(s),
                                 (k, d)) if uses_pos else None)
        dropout_key = self._key("dropout", z) if train else None

        # Mapping, w_avg, broadcast, style mixing, truncation.
        w_avg = self.variable("batch_stats", "w_avg", lambda: jnp.zeros((d,), jnp.float32))
        if ws is None:
            mapping = MappingNetwork(k, num_layers=self.mapping_layers, lr_multiplier=self.mapping_lr_multiplier,
                                     resnet=self.mapping_resnet, self_attention=self.mapping_self_attention,
                                     map_locals=self.attention or self.duplex, num_heads=self.settings.num_heads,
                                     dropout=self.settings.dropout, z_norm=self.z_norm, name="mapping")
            map_key = None if dropout_key is None else jax.random.fold_in(dropout_key, 10_000)
            w = mapping(z.reshape(n, k + 1, d), latent_pos, deterministic=not train, dropout_key=map_key)
            if train and self.is_mutable_collection("batch_stats") and not self.is_initializing():
                batch_mean = jnp.mean(jax.lax.stop_gradient(w), axis=(0, 1))
                w_avg.value = batch_mean + self.w_avg_beta * (w_avg.value - batch_mean)
            ws = jnp.broadcast_to(w[:, :, None, :], (n, k + 1, slots, d))
            prob = self.style_mixing_prob if style_mixing_prob is None else style_mixing_prob
            if train and prob > 0:
                mix_key = self._key("mixing", z)
                z2 = jax.random.normal(jax.random.fold_in(mix_key, 0), (z.size,)).reshape(z.shape)
                w2 = mapping(z2.reshape(n, k + 1, d), latent_pos, deterministic=not train,
                             dropout_key=None if map_key is None else jax.random.fold_in(map_key, 1))
                ws = mix_styles(ws, jnp.broadcast_to(w2[:, :, None, :], ws.shape),
                                style_mixing_cutoff(jax.random.fold_in(mix_key, 1), slots, prob))
        elif ws.shape != (n, k + 1, slots, d):
            raise ValueError(f"GANsformer generator: ws must be (N, K + 1, num_ws, d) = {(n, k + 1, slots, d)}, "
                             f"got {tuple(ws.shape)}.")
        if not (isinstance(truncation_psi, (int, float)) and truncation_psi == 1):
            ws = truncate(ws, w_avg.value, truncation_psi, truncation_cutoff)

        images, maps = self._synthesis(ws, latent_pos, train, noise_mode, dropout_key, z)
        if self.output_activation == "clip":
            images = straight_through_clip(images)
        elif self.output_activation == "tanh":
            images = jnp.tanh(images)
        if return_aux:
            return images, {"ws": ws, "attention": maps}
        return images

    def _synthesis(self, ws, latent_pos, train, noise_mode, dropout_key, z):
        k, n = self.num_latents, ws.shape[0]
        log2 = int(round(math.log2(self.resolution)))
        ch = lambda r: sg.channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
        common = dict(algebra=self.algebra, resample_filter=self.resample_filter,
                      modulate=self.style, settings=self.settings, duplex=self.duplex)
        noise_key = self._key("noise", z) if noise_mode == "random" else None
        state = {"slot": 0, "layer": 0, "locals": None}
        maps = []

        def run(layer: SynthesisLayer, x, res):
            i, slot = state["layer"], state["slot"]
            w_locals = ws[:, :k, slot] if state["locals"] is None else state["locals"]
            noise = None
            if layer.use_noise:
                key = None if noise_key is None else jax.random.fold_in(noise_key, i)
                noise = sg.noise_map(key, n, res, res, noise_mode, i)
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            x, probs, new_locals = layer(x, ws[:, k, slot], w_locals, latent_pos, noise=noise,
                                         deterministic=not train, dropout_key=key)
            if probs is not None:
                maps.append(probs)
            if new_locals is not None:
                state["locals"] = new_locals
            state["slot"] += 1
            state["layer"] += 1
            return x

        def attends(res):
            return self.attention and k > 0 and self.attention_start_res <= int(math.log2(res)) < self.attention_end_res

        const = self.param("const", lambda key, s: jax.random.normal(key, (math.prod(s),)).reshape(s), (4, 4, ch(4)))
        x = jnp.broadcast_to(const[None], (n, 4, 4, ch(4))).astype(jnp.float32)
        x = run(SynthesisLayer(ch(4), use_attention=attends(4), use_noise=self.noise, name="b4_conv1", **common), x, 4)
        for res in [2 ** i for i in range(3, log2 + 1)]:
            c = ch(res)
            gain = math.sqrt(0.5)
            skip = sg.EqualizedConv(c, 1, algebra=self.algebra, use_bias=False, up=2, gain=gain,
                                    resample_filter=self.resample_filter, name=f"b{res}_skip")(x)
            x = run(SynthesisLayer(c, up=2, use_attention=attends(res), use_noise=self.noise,
                                   name=f"b{res}_conv0", **common), x, res)
            x = run(SynthesisLayer(c, gain=gain, use_attention=attends(res), use_noise=self.noise,
                                   name=f"b{res}_conv1", **common), x, res)
            x = x + skip
        c = ch(self.resolution)
        x = run(SynthesisLayer(c, use_noise=False, use_bias_act=False, name="conv_last", **common), x,
                self.resolution)
        torgb = sg.ModulatedConv(self.channels, 1, demodulate=False, modulate=self.style, algebra=self.algebra,
                                 name="torgb")
        img = torgb(x, ws[:, k, state["slot"]])
        bias = self.param("torgb_bias", nn.initializers.zeros_init(), (self.channels,))
        return img + bias, maps


# ---------------------------------------------------------------------------------------------------
# Registry entry
# ---------------------------------------------------------------------------------------------------

def _choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ValueError(f"model.gansformer.{name} must be one of {', '.join(map(str, allowed))}, got {value!r}.")
    return value


def build(model: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) from ``config.model`` (``channels`` resolved) and ``config.model.gansformer``."""
    resolution = int(model.resolution)
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"gansformer: model.resolution must be a power of 2 >= 8, got {resolution}.")
    if "gansformer" not in model:
        raise ValueError("gansformer: config.model.gansformer is missing; start from configs/gansformer_cifar10.py or "
                         "add qgan_jax.models.gansformer.default_config() as config.model.gansformer.")
    g = model.gansformer
    if model.dtype != "float32":
        raise ValueError(f"gansformer: model.dtype must be 'float32' (the family runs in float32), "
                         f"got {model.dtype!r}.")
    k, d = int(g.num_latents), int(g.latent_dim)
    if k < 0 or d < 4 or d % 4:
        raise ValueError(f"gansformer: num_latents must be >= 0 and latent_dim a positive multiple of 4, got "
                         f"num_latents = {k}, latent_dim = {d}.")
    if int(model.z_dim) != (k + 1) * d:
        raise ValueError(f"gansformer: model.z_dim = {model.z_dim} must equal (num_latents + 1) * latent_dim = "
                         f"{(k + 1) * d}.")
    algebra = Algebra.from_config(model)
    d_algebra = Algebra.from_config(model, name=g.d_algebra)
    settings = AttentionSettings(
        keys=_choice("keys", g["keys"], att.KEY_SOURCES),
        kmeans_iters=int(g.kmeans_iters),
        integration=_choice("integration", g.integration, att.INTEGRATIONS),
        norm=_choice("norm", g.norm, att.NORMS),
        num_heads=int(g.num_heads),
        dropout=float(g.attention_dropout),
        use_pos=bool(g.use_pos))
    taps = tuple(float(t) for t in g.resample_filter)
    sg.fir_taps(taps)
    channel_base, channel_max = int(g.channel_base), int(g.channel_max)
    multiple = algebra.multiple
    for r in [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]:
        c = sg.channels_at(r, channel_base, channel_max)
        if c < 1 or c % multiple or (settings.num_heads and c % settings.num_heads):
            raise ValueError(f"gansformer: {c} channels at {r} px (channel_base {channel_base}, channel_max "
                             f"{channel_max}) must be positive and divisible by the algebra multiple {multiple} "
                             f"and num_heads {settings.num_heads}.")
    generator = Generator(
        resolution=resolution, channels=int(model.channels), num_latents=k, latent_dim=d,
        channel_base=channel_base, channel_max=channel_max, algebra=algebra,
        attention=bool(g.attention),
        attention_start_res=int(g.attention_start_res),
        attention_end_res=int(g.attention_end_res), settings=settings,
        duplex=bool(g.duplex), style=bool(g.style), noise=bool(g.noise),
        mapping_layers=int(g.mapping_layers),
        mapping_lr_multiplier=float(g.mapping_lr_multiplier),
        mapping_resnet=bool(g.mapping_resnet),
        mapping_self_attention=bool(g.mapping_self_attention),
        z_norm=_choice("z_norm", g.z_norm, Z_NORMS),
        w_avg_beta=float(g.w_avg_beta),
        style_mixing_prob=float(g.style_mixing_prob), resample_filter=taps,
        output_activation=_choice("output_activation", g.output_activation, OUTPUT_ACTIVATIONS))
    discriminator = sg.ResnetDiscriminator(
        resolution=resolution, channel_base=channel_base, channel_max=channel_max, algebra=d_algebra,
        mbstd_group_size=int(g.mbstd_group_size),
        mbstd_num_channels=int(g.mbstd_num_channels), resample_filter=taps)
    return generator, discriminator
