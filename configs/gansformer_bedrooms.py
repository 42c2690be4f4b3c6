"""GANsformer on LSUN-Bedrooms 256x256 (TFDS lsun/bedroom): the paper's / released settings
(docs/decisions.md#gansformer-5).

    python main.py --config=configs/gansformer_bedrooms.py --workdir=runs/gansformer_bedrooms

K = 16 local latents of d = 32 (z_dim 544), R1 gamma 100, no mirroring; images centre-cropped and resized to 256.
"""

from configs.recipes import gansformer as gansformer_recipe


def get_config():
    return gansformer_recipe.paper_config(num_latents=16, latent_dim=32, r1_gamma=100.0, mirror=False,
                                          source="tfds:lsun/bedroom", center_crop=True)
