"""GIU-GAN (Tian et al., 2022): the paper's DCGAN baseline plus GIU modules and Representative BN (GF §5–§6).

Generator: z as a 1x1 image; ConvT k4 s1 p0 to 4x4, then ConvT k4 s2 p1 doubling the size and halving the width
(``g_width * 2**(n-1-i)`` at stage i, n = log2(resolution / 4)), each followed by a norm and ReLU, and a final
ConvT k4 s2 p1 to the image channels with tanh; no conv biases. The norm is Representative BN at the stages of
``rbn_at`` (the first and the last by default) and BN elsewhere. A GIU follows the ReLU of every stage in
``giu_at``.
Discriminator: Conv k4 s2 p1 (width ``d_width * 2**i`` at stage i), [BN from the second stage on], LeakyReLU
(0.1), a GIU after the stages in ``giu_at``, then Conv k4 s1 p0 to one score (hypercomplex models: to ``m``
outputs and a real Dense(m -> 1)). Spectral norm (D4) on every conv / transposed conv / dense layer of a network
when enabled for it, GIU internals included (D11).

Names: G ``deconv1..``, ``bn{i}`` / ``rbn{i}``, ``giu{i}``; D ``conv1..``, ``bn{i}``, ``giu{i}``, ``dense``.
Counts (G + D, real): 32 px 1,218,912 + 696,864 = 1,915,776; 64 px 3,944,064 + 2,900,032 = 6,844,096; without
GIU and RBN 1,846,144 / 6,569,856 (GF §5, §7).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from qgan_jax.layers.attention import SelfAttention
from qgan_jax.layers.involution import GIU
from qgan_jax.layers.rbn import RepresentativeBatchNorm
from qgan_jax.models import common, factorised_gan

Array = jax.Array

# The six placements of the paper's Table 1 (D10) -> (generator stages, discriminator stages) as names;
# "shallow" is next to a network's input, "deep" next to its output, "all" is every stage.
PLACEMENTS = {
    "middle": ("middle", "middle"),                     # middle D and G (FID 26.72)
    "shallow_d_deep_g": ("deep", "shallow"),            # (39.53)
    "deep_d_shallow_g": ("shallow", "deep"),            # the default (22.66)
    "all": ("all", "all"),                              # (35.36)
    "g_only": ("shallow", None),                        # only G, at its default stage (26.24)
    "d_only": (None, "deep"),                           # only D, at its default stage (29.84)
}


def default_config() -> ml_collections.ConfigDict:
    """The ``config.model.giu`` block with the paper's choices (D10–D12); every field commented."""
    config = ml_collections.ConfigDict()
    config.enabled = True                 # GIU modules on / off (off: the paper's baseline layout).
    config.placement = "deep_d_shallow_g"  # Table 1: middle | shallow_d_deep_g | deep_d_shallow_g | all |
                                          # g_only | d_only ("deep D" = before D's last conv, "shallow G" =
                                          # after G's first stage).
    config.rbn = True                     # Representative BN at G's first and last norm (else plain BN).
    config.kernel_size = 3                # Involution kernel K.
    config.group_channels = 16            # Channels per involution group g_c (G = C / g_c kernels per pixel).
    config.reduction = 4                  # Involution reduction r_1 (4 reproduces the paper's counts; D10).
    config.se_reduction = 16              # Squeeze-and-excitation reduction r_2.
    config.g_spectral_norm = True         # Spectral norm on every G layer (D11); D follows model.spectral_norm.
    config.d_batch_norm = False           # BN in D after every conv but the first and last (DCGAN baseline).
    config.g_self_attention_at = ()       # SAGAN baseline: G stages followed by a self-attention block.
    config.d_self_attention_at = ()       # SAGAN baseline: D stages followed by a self-attention block.
    config.d_leaky_slope = 0.1            # Negative slope of D's LeakyReLU.
    return config


_DEFAULTS = default_config()


@dataclasses.dataclass(frozen=True)
class GIUSettings:
    """Hyper-parameters of every GIU in a network (see ``qgan_jax.layers.involution.GIU``)."""
    kernel_size: int = 3
    group_channels: int = 16
    reduction: int = 4
    se_reduction: int = 16


def num_stages(resolution: int, family: str = "giu_gan") -> int:
    """Hidden stages n of G and D: resolution = 4 * 2**n, n >= 1."""
    n = int(round(math.log2(max(resolution, 1) / 4)))
    if n < 1 or 4 * 2 ** n != resolution:
        raise ValueError(f"{family}: model.resolution must be 4 * 2**k with k >= 1 (e.g. 32, 64), "
                         f"got {resolution}.")
    return n


def placement_stages(placement: str, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Table 1 placement name -> (generator stages, discriminator stages) that get a GIU, for n stages."""
    if placement not in PLACEMENTS:
        raise ValueError(f"model.giu.placement = {placement!r} is unknown; allowed: {', '.join(PLACEMENTS)}.")
    g_where, d_where = PLACEMENTS[placement]
    # Middle: G stage (n-1)//2 and D stage n//2 have the same size (8x8 at 32 and 64 px).
    g = {"shallow": (0,), "deep": (n - 1,), "middle": ((n - 1) // 2,), "all": tuple(range(n)), None: ()}
    d = {"shallow": (0,), "deep": (n - 1,), "middle": (n // 2,), "all": tuple(range(n)), None: ()}
    return g[g_where], d[d_where]


def _kernel_init(layers: common.Layers) -> Any:
    """GIU kernels follow the model's init policy: N(0, 0.02^2) for init 'normal', else the layer default."""
    if layers.init != "normal" or layers.algebra == "phc":
        return None
    return common.normal_init() if layers.algebra == "real" else "normal"


def _giu(layers: common.Layers, settings: GIUSettings, spectral_norm: bool, name: str) -> GIU:
    return GIU(settings.kernel_size, settings.group_channels, settings.reduction, settings.se_reduction,
               algebra=layers.algebra, phc_n=layers.phc_n, spectral_norm=spectral_norm,
               kernel_init=_kernel_init(layers), dtype=layers.dtype, name=name)


def _self_attention(layers: common.Layers, spectral_norm: bool, name: str) -> SelfAttention:
    return SelfAttention(algebra=layers.algebra, phc_n=layers.phc_n, spectral_norm=spectral_norm,
                         dtype=layers.dtype, name=name)


def _stages(owner: str, what: str, stages: Sequence[int], n: int) -> set[int]:
    out = set()
    for i in stages:
        if not -n <= i < n:
            raise ValueError(f"{owner}: {what} stage {i} is out of range for {n} stages.")
        out.add(i % n)
    return out


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, R, R, channels) in [-1, 1]; ``width`` = ngf (64 in the paper)."""
    layers: common.Layers
    resolution: int = 32
    channels: int = 3
    width: int = 64
    giu_at: Sequence[int] = (0,)
    rbn_at: Sequence[int] = (0, -1)
    batch_norm: bool = True
    spectral_norm: bool = True
    giu: GIUSettings = GIUSettings()
    attention_at: Sequence[int] = ()
    factorised: bool = False  # Each k4 transposed conv as a clean (4, 1) + (1, 4) pair (D14).
    family: ClassVar[str] = "giu_gan"  # Names the model in error messages.

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        lay, n, sn = self.layers, num_stages(self.resolution, self.family), self.spectral_norm
        owner = f"{self.family} generator"
        giu_at = _stages(owner, "GIU", self.giu_at, n)
        rbn_at = _stages(owner, "RBN", self.rbn_at, n)
        attention_at = _stages(owner, "self-attention", self.attention_at, n)
        h = z.reshape(z.shape[0], 1, 1, z.shape[-1])
        for i in range(n):
            features = self.width * 2 ** (n - 1 - i)
            common.check_width(owner, "width", features, lay)
            h = factorised_gan.conv_transpose(lay, features, (4, 4), factorised=self.factorised,
                                              strides=1 if i == 0 else 2, padding=0 if i == 0 else 1, bias=False,
                                              spectral_norm=sn, name=f"deconv{i + 1}")(h, train)
            if self.batch_norm and i in rbn_at:
                h = RepresentativeBatchNorm(use_running_average=not train, dtype=lay.dtype,
                                            name=f"rbn{i + 1}")(h)
            elif self.batch_norm:
                h = lay.batch_norm(train, name=f"bn{i + 1}")(h)
            h = nn.relu(h)
            if i in giu_at:
                h = _giu(lay, self.giu, sn, f"giu{i + 1}")(h, train)
            if i in attention_at:
                h = _self_attention(lay, sn, f"attention{i + 1}")(h, train)
        h = factorised_gan.conv_transpose(lay, self.channels, (4, 4), factorised=self.factorised, strides=2,
                                          padding=1, bias=False, spectral_norm=sn, name=f"deconv{n + 1}")(h, train)
        return jnp.tanh(h)


class Discriminator(nn.Module):
    """images (N, R, R, channels) -> scores (N,); ``width`` = ndf (64 in the paper)."""
    layers: common.Layers
    resolution: int = 32
    width: int = 64
    giu_at: Sequence[int] = (-1,)
    batch_norm: bool = False
    spectral_norm: bool = True
    leaky_slope: float = 0.1
    giu: GIUSettings = GIUSettings()
    attention_at: Sequence[int] = ()
    family: ClassVar[str] = "giu_gan"

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        lay, n, sn = self.layers, num_stages(self.resolution, self.family), self.spectral_norm
        owner = f"{self.family} discriminator"
        giu_at = _stages(owner, "GIU", self.giu_at, n)
        attention_at = _stages(owner, "self-attention", self.attention_at, n)
        h = x
        for i in range(n):
            features = self.width * 2 ** i
            common.check_width(owner, "width", features, lay)
            h = lay.conv(features, (4, 4), strides=2, padding=1, bias=False, spectral_norm=sn,
                         name=f"conv{i + 1}")(h, train)
            if self.batch_norm and i > 0:
                h = lay.batch_norm(train, name=f"bn{i + 1}")(h)
            h = nn.leaky_relu(h, self.leaky_slope)
            if i in giu_at:
                h = _giu(lay, self.giu, sn, f"giu{i + 1}")(h, train)
            if i in attention_at:
                h = _self_attention(lay, sn, f"attention{i + 1}")(h, train)
        outputs = lay.multiple
        h = lay.conv(outputs, (4, 4), strides=1, padding=0, bias=False, spectral_norm=sn,
                     name=f"conv{n + 1}")(h, train)
        h = h.reshape(h.shape[0], -1)
        if outputs > 1:
            h = lay.real_dense(1, spectral_norm=sn, name="dense")(h, train)
        return h[:, 0]


def _field(model: Any, name: str) -> Any:
    """``model.giu.<name>``, falling back to ``default_config()`` where the config has no such field."""
    giu = model.get("giu", None) if hasattr(model, "get") else getattr(model, "giu", None)
    value = None if giu is None else (giu.get(name, None) if hasattr(giu, "get") else getattr(giu, name, None))
    return _DEFAULTS[name] if value is None else value


def build(model: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) from ``config.model`` (``channels`` already resolved) and ``model.giu``."""
    layers = common.Layers(algebra=model.algebra, phc_n=model.phc_n if model.algebra == "phc" else None,
                           init=model.init, dtype=common.resolve_dtype(model.dtype))
    n = num_stages(model.resolution)
    g_at, d_at = placement_stages(_field(model, "placement"), n)
    if not _field(model, "enabled"):
        g_at, d_at = (), ()
    rbn_at = (0, n - 1) if _field(model, "rbn") else ()
    settings = GIUSettings(*(int(_field(model, k)) for k in ("kernel_size", "group_channels", "reduction",
                                                             "se_reduction")))
    generator = Generator(layers, resolution=model.resolution, channels=model.channels, width=model.g_width,
                          giu_at=g_at, rbn_at=rbn_at, batch_norm=model.batch_norm,
                          spectral_norm=bool(_field(model, "g_spectral_norm")), giu=settings,
                          attention_at=tuple(_field(model, "g_self_attention_at")),
                          factorised=bool(model.get("factorised", False)))
    discriminator = Discriminator(layers, resolution=model.resolution, width=model.d_width, giu_at=d_at,
                                  batch_norm=bool(_field(model, "d_batch_norm")),
                                  spectral_norm=model.spectral_norm,
                                  leaky_slope=float(_field(model, "d_leaky_slope")), giu=settings,
                                  attention_at=tuple(_field(model, "d_self_attention_at")))
    return generator, discriminator
