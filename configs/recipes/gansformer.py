"""What every GANsformer config shares: the released training recipe and the per-dataset knobs on top of it.

`gansformer_config` builds a GANsformer config at any resolution; `paper_config` fixes the 256 px settings of the
paper's datasets (FFHQ, CLEVR, LSUN-Bedrooms, Cityscapes: docs/decisions.md#gf-5); `training_recipe` is the
released optimisation recipe. Each configs/gansformer_*.py is one call to one of them.
"""

import ml_collections

from configs import base
from qgan_jax.models import gansformer as gansformer_model


def training_recipe(config: ml_collections.ConfigDict, *, batch_size: int = 32) -> ml_collections.ConfigDict:
    """The released training recipe, in place: non-saturating logistic loss, Adam lr 0.002 beta (0, 0.99) eps 1e-8
    for G and D, one D step per G step, lazy R1 every 16 D steps, G EMA from the half-life, grids truncated at 0.7.
    R1 gamma and mirroring are per dataset."""
    config.loss.name = "non_saturating"
    config.loss.gp_weight = 0.0
    for net in ("g", "d"):
        config.optimizer[net].name = "adam"
        config.optimizer[net].lr = 0.002
        config.optimizer[net].b1 = 0.0
        config.optimizer[net].b2 = 0.99
        config.optimizer[net].eps = 1e-8
    config.loss.r1_interval = 16       # Lazy R1 every 16 D steps, D's Adam corrected (qgan_jax.step).
    config.sample.truncation_psi = 0.7  # Grids and --mode=sample only; FID never truncates.
    config.train.n_critic = 1
    config.train.batch_size = batch_size
    config.train.ema_decay = gansformer_model.ema_decay_from_half_life(config.model.gansformer.ema_half_life_kimg,
                                                                       batch_size)
    return config


def gansformer_config(*, resolution: int, num_latents: int, latent_dim: int, r1_gamma: float, mirror: bool,
                      source: str, num_steps: int, image_size: int = 0, center_crop: bool = False,
                      channel_base: int | None = None, channel_max: int | None = None,
                      mapping_self_attention: bool = True, style: bool = True) -> ml_collections.ConfigDict:
    """A GANsformer config at `resolution` with the released recipe (batch 32); None keeps the family default."""
    config = base.get_config()
    config.model.name = "gansformer"
    config.model.algebra = "real"
    config.model.resolution = resolution
    config.model.channels = 0               # auto: 3 for real, 4 for quaternion / PHC-4.
    config.model.gansformer = gansformer_model.default_config()
    g = config.model.gansformer
    g.num_latents = num_latents
    g.latent_dim = latent_dim
    if channel_base is not None:
        g.channel_base = channel_base
    if channel_max is not None:
        g.channel_max = channel_max
    g.mapping_self_attention = mapping_self_attention
    g.style = style
    config.model.z_dim = (g.get_ref("num_latents") + 1) * g.get_ref("latent_dim")   # Tracks K and d.
    config.data.source = source
    config.data.image_size = image_size     # 0 keeps the source size.
    config.data.center_crop = center_crop
    config.data.quaternion = "none"         # resolved to 'zero' for 4-channel models (docs/decisions.md#d8).
    config.data.random_flip = mirror
    training_recipe(config, batch_size=32)
    config.loss.r1_gamma = r1_gamma
    config.train.num_steps = num_steps
    config.checkpoint.every_steps = 10_000
    config.sample.every_steps = 5_000
    config.eval.every_steps = 50_000
    return config


def paper_config(*, num_latents: int, latent_dim: int, r1_gamma: float, mirror: bool, source: str,
                 center_crop: bool = False, mapping_self_attention: bool = True,
                 style: bool = True) -> ml_collections.ConfigDict:
    """The released GANformer setting at 256 px with the per-dataset fields of docs/decisions.md#gf-5."""
    # Upstream crops CLEVR / Cityscapes to an aspect ratio instead of centre-cropping (not ported:
    # docs/decisions.md#gansformer-7-2).
    config = gansformer_config(resolution=256, num_latents=num_latents, latent_dim=latent_dim, r1_gamma=r1_gamma,
                               mirror=mirror, source=source, num_steps=781_250,   # 25,000 kimg at batch 32.
                               image_size=256, center_crop=center_crop,
                               mapping_self_attention=mapping_self_attention, style=style)
    config.data.pipeline = "stream"   # Decoded on demand, each host its shard (README, Data).
    config.sample.batch_size = 64
    return config
