"""GANsformer on CLEVR 256x256 (TFDS clevr): the paper's / released settings
(docs/decisions.md#gansformer-5).

    python main.py --config=configs/gansformer_clevr.py --workdir=runs/gansformer_clevr

K = 8 local latents of d = 16 (latent size 128, z_dim 144), no latent self-attention in the mapping, no global
style modulation (plain convolutions: --style False), R1 gamma 40, no mirroring. The 480x320 scenes are resized
to 256x256 (upstream keeps a 0.75 aspect ratio by cropping the output; not ported).
"""

from configs.recipes import gansformer as gansformer_recipe


def get_config():
    return gansformer_recipe.paper_config(num_latents=8, latent_dim=16, r1_gamma=40.0, mirror=False,
                                          source="tfds:clevr", mapping_self_attention=False, style=False)
