"""GANsformer on CIFAR-10 (32x32): the released recipe scaled to 32 px (spec gansformer.md §7).

    python main.py --config=configs/gansformer_cifar10.py --workdir=runs/gansformer_cifar10
    python main.py --config=configs/gansformer_cifar10.py --workdir=runs/qgansformer --config.model.algebra=quaternion
    python main.py --config=configs/gansformer_cifar10.py --workdir=runs/sg2 --config.model.gansformer.attention=False
    python main.py --config=configs/gansformer_cifar10.py --workdir=runs/simplex --config.model.gansformer.keys=latents

K = 8 local latents of d = 32 (+ 1 global): z_dim = 288 (tracks num_latents / latent_dim). Channels
min(4096 / r, 256): 256 up to 16 px, 128 at 32 px. Attention after all 7 modulated convs but conv_last. R1 gamma
0.01 (StyleGAN2-ADA's CIFAR setting; lazy, every 16 D steps), mirror on, batch 32, Adam 0.002 (0, 0.99),
G EMA half-life 10 kimg, style mixing 0.9. The algebra switch makes the synthesis and D convolutions quaternion /
PHC (the mapping, affine and attention layers stay real).
"""

from configs import base
from qgan_jax.models import gansformer


def get_config():
    config = base.get_config()
    config.model.name = "gansformer"
    config.model.algebra = "real"
    config.model.resolution = 32
    config.model.channels = 0               # auto: 3 for real, 4 for quaternion / PHC-4.
    config.model.gansformer = gansformer.default_config()
    g = config.model.gansformer
    g.num_latents = 8
    g.latent_dim = 32
    g.channel_base = 4096
    g.channel_max = 256
    config.model.z_dim = (g.get_ref("num_latents") + 1) * g.get_ref("latent_dim")
    config.data.source = "tfds:cifar10"
    config.data.quaternion = "none"         # resolved to 'zero' for 4-channel models (D8).
    config.data.random_flip = True
    gansformer.apply_training_defaults(config, batch_size=32)
    config.loss.r1_gamma = 0.01
    config.train.num_steps = 300_000
    config.checkpoint.every_steps = 10_000
    config.sample.every_steps = 5_000
    config.eval.every_steps = 50_000
    return config
