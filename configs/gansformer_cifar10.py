"""GANsformer on CIFAR-10 (32x32): the released recipe scaled to 32 px (docs/decisions.md#gansformer-7).

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

from configs.recipes import gansformer as gansformer_recipe


def get_config():
    return gansformer_recipe.gansformer_config(resolution=32, num_latents=8, latent_dim=32, channel_base=4096,
                                               channel_max=256, r1_gamma=0.01, mirror=True, source="tfds:cifar10",
                                               num_steps=300_000)
