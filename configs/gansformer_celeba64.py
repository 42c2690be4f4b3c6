"""GANsformer on CelebA 64x64 (docs/decisions.md#gansformer-7).

    python main.py --config=configs/gansformer_celeba64.py --workdir=runs/gansformer_celeba64

K = 16 local latents of d = 32 (z_dim 544), channels min(8192 / r, 256) (256 up to 32 px, 128 at 64 px),
attention after all 9 modulated convs but conv_last. R1 gamma 0.0256 (0.0002 r^2 / batch, StyleGAN2-ADA's
heuristic), mirror on, batch 32, Adam 0.002 (0, 0.99), G EMA half-life 10 kimg, style mixing 0.9.
CelebA: centre crop then resize to 64.
"""

from configs.recipes import gansformer as gansformer_recipe


def get_config():
    return gansformer_recipe.gansformer_config(resolution=64, num_latents=16, latent_dim=32, channel_base=8192,
                                               channel_max=256, r1_gamma=0.0256, mirror=True, source="tfds:celeb_a",
                                               image_size=64, center_crop=True, num_steps=300_000)
