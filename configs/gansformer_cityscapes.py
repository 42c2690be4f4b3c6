"""GANsformer on Cityscapes 256x256: the paper's / released settings (docs/decisions.md#gansformer-5).

    python main.py --config=configs/gansformer_cityscapes.py --workdir=runs/gansformer_cityscapes \
        --config.data.source=folder:/path/to/cityscapes

Cityscapes needs a manual download (cityscapes-dataset.com, leftImg8bit): put the images in a folder and point
data.source at it. K = 16 local latents of d = 32 (z_dim 544), R1 gamma 20, mirror on. The 2:1 frames are resized
to 256x256 (upstream keeps a 0.5 aspect ratio by cropping the output; not ported).
"""

from configs.recipes import gansformer as gansformer_recipe


def get_config():
    return gansformer_recipe.paper_config(num_latents=16, latent_dim=32, r1_gamma=20.0, mirror=True,
                                          source="folder:data/cityscapes")
