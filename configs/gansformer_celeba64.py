"""GANsformer on CelebA 64x64 (spec gansformer.md §7).

    python main.py --config=configs/gansformer_celeba64.py --workdir=runs/gansformer_celeba64

K = 16 local latents of d = 32 (z_dim 544), channels min(8192 / r, 256) (256 up to 32 px, 128 at 64 px),
attention after all 9 modulated convs but conv_last. R1 gamma 0.0256 (0.0002 r^2 / batch, StyleGAN2-ADA's
heuristic), mirror on, batch 32, Adam 0.002 (0, 0.99), G EMA half-life 10 kimg, style mixing 0.9.
CelebA: centre crop then resize to 64.
"""

from configs import base
from qgan_jax.models import gansformer


def get_config():
    config = base.get_config()
    config.model.name = "gansformer"
    config.model.algebra = "real"
    config.model.resolution = 64
    config.model.channels = 0
    config.model.gansformer = gansformer.default_config()
    g = config.model.gansformer
    g.num_latents = 16
    g.latent_dim = 32
    g.channel_base = 8192
    g.channel_max = 256
    config.model.z_dim = (g.get_ref("num_latents") + 1) * g.get_ref("latent_dim")
    config.data.source = "tfds:celeb_a"
    config.data.center_crop = True
    config.data.image_size = 64
    config.data.quaternion = "none"
    config.data.random_flip = True
    gansformer.apply_training_defaults(config, batch_size=32)
    config.loss.r1_gamma = 0.0256
    config.train.num_steps = 300_000
    config.checkpoint.every_steps = 10_000
    config.sample.every_steps = 5_000
    config.eval.every_steps = 50_000
    return config
