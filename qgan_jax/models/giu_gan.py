"""GIU-GAN (Tian et al., 2022): the paper's DCGAN baseline plus GIU modules and Representative BN.

Reference notes: docs/decisions.md#gf-5, #gf-6.

Generator: z as a 1x1 image; ConvT k4 s1 p0 to 4x4, then ConvT k4 s2 p1 doubling the size and halving the width
(``g_width * 2**(n-1-i)`` at stage i, n = log2(resolution / 4)), each followed by a norm and ReLU, and a final
ConvT k4 s2 p1 to the image channels with tanh; no conv biases. The norm is Representative BN at the stages of
``rbn_at`` (the first and the last by default) and BN elsewhere. A GIU follows the ReLU of every stage in
``giu_at``.
Discriminator: Conv k4 s2 p1 (width ``d_width * 2**i`` at stage i), [BN from the second stage on], LeakyReLU
(0.1), a GIU after the stages in ``giu_at``, then Conv k4 s1 p0 to one score (hypercomplex models: to ``m``
outputs and a real Dense(m -> 1)). Spectral norm (docs/decisions.md#d4) on every conv / transposed conv / dense layer
of a network
when enabled for it, GIU internals included (docs/decisions.md#d11).

The networks are ``qgan_jax.models.dcgan``'s stage networks with GIU, RBN and spectral norm switched on.
Names: G ``deconv1..``, ``bn{i}`` / ``rbn{i}``, ``giu{i}``; D ``conv1..``, ``bn{i}``, ``giu{i}``, ``dense``.
Counts (G + D, real): 32 px 1,218,912 + 696,864 = 1,915,776; 64 px 3,944,064 + 2,900,032 = 6,844,096; without
GIU and RBN 1,846,144 / 6,569,856 (docs/decisions.md#gf-5, #gf-7).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import ml_collections
from flax import linen as nn

from qgan_jax.layers.factory import LayerFactory
from qgan_jax.models import dcgan
from qgan_jax.models.dcgan import GIUSettings, num_stages

# The six placements of the paper's Table 1 (docs/decisions.md#d10) -> (G stages, D stages) as names;
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
    """The ``config.model.giu`` block with the paper's choices (docs/decisions.md#d10 to #d12), fields commented."""
    config = ml_collections.ConfigDict()
    config.enabled = True                 # GIU modules on / off (off: the paper's baseline layout).
    config.placement = "deep_d_shallow_g"  # Table 1: middle | shallow_d_deep_g | deep_d_shallow_g | all |
                                          # g_only | d_only ("deep D" = before D's last conv, "shallow G" =
                                          # after G's first stage).
    config.rbn = True                     # Representative BN at G's first and last norm (else plain BN).
    config.kernel_size = 3                # Involution kernel K.
    config.group_channels = 16            # Channels per involution group g_c (G = C / g_c kernels per pixel).
    config.reduction = 4                  # Involution reduction r_1 (4 reproduces the paper's counts, #d10).
    config.se_reduction = 16              # Squeeze-and-excitation reduction r_2.
    config.g_spectral_norm = True         # Spectral norm on every G layer (#d11); D follows model.spectral_norm.
    config.d_batch_norm = False           # BN in D after every conv but the first and last (DCGAN baseline).
    config.g_self_attention_at = ()       # SAGAN baseline: G stages followed by a self-attention block.
    config.d_self_attention_at = ()       # SAGAN baseline: D stages followed by a self-attention block.
    config.d_leaky_slope = 0.1            # Negative slope of D's LeakyReLU.
    return config


def placement_stages(placement: str, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Table 1 placement name -> (generator stages, discriminator stages) that get a GIU, for n stages."""
    if placement not in PLACEMENTS:
        raise ValueError(f"model.giu.placement = {placement!r} is unknown; allowed: {', '.join(PLACEMENTS)}.")
    g_where, d_where = PLACEMENTS[placement]
    # Middle: G stage (n-1)//2 and D stage n//2 have the same size (8x8 at 32 and 64 px).
    g = {"shallow": (0,), "deep": (n - 1,), "middle": ((n - 1) // 2,), "all": tuple(range(n)), None: ()}
    d = {"shallow": (0,), "deep": (n - 1,), "middle": (n // 2,), "all": tuple(range(n)), None: ()}
    return g[g_where], d[d_where]


class Generator(dcgan.Generator):
    """The DCGAN generator with GIU-GAN's defaults: GIU after the first stage, RBN at the first and last, SN."""
    resolution: int = 32
    channels: int = 3
    giu_at: Sequence[int] = (0,)
    rbn_at: Sequence[int] = (0, -1)
    spectral_norm: bool = True
    family: ClassVar[str] = "giu_gan"


class Discriminator(dcgan.Discriminator):
    """The DCGAN discriminator with GIU-GAN's defaults: GIU after the last stage, no BN, LeakyReLU(0.1), SN."""
    resolution: int = 32
    giu_at: Sequence[int] = (-1,)
    batch_norm: bool = False
    spectral_norm: bool = True
    leaky_slope: float = 0.1
    family: ClassVar[str] = "giu_gan"


def build(model: Any) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) from ``config.model`` (``channels`` already resolved) and ``model.giu``."""
    layers = LayerFactory.from_config(model)
    giu = model.giu if "giu" in model else default_config()  # A config without the block gets the paper's GIU.
    n = num_stages(model.resolution, "giu_gan")
    g_at, d_at = placement_stages(giu.placement, n)
    if not giu.enabled:
        g_at, d_at = (), ()
    rbn_at = (0, n - 1) if giu.rbn else ()
    settings = GIUSettings(*(int(giu[k]) for k in ("kernel_size", "group_channels", "reduction", "se_reduction")))
    generator = Generator(layers, resolution=model.resolution, channels=model.channels, width=model.g_width,
                          giu_at=g_at, rbn_at=rbn_at, batch_norm=model.batch_norm,
                          spectral_norm=bool(giu.g_spectral_norm), giu=settings,
                          attention_at=tuple(giu.g_self_attention_at),
                          factorised=bool(model.factorised))
    discriminator = Discriminator(layers, resolution=model.resolution, width=model.d_width, giu_at=d_at,
                                  batch_norm=bool(giu.d_batch_norm),
                                  spectral_norm=model.spectral_norm,
                                  leaky_slope=float(giu.d_leaky_slope), giu=settings,
                                  attention_at=tuple(giu.d_self_attention_at))
    return generator, discriminator
