"""GANsformer on FFHQ 256x256: the paper's / released settings (docs/decisions.md#gansformer-5).

    python main.py --config=configs/gansformer_ffhq.py --workdir=runs/gansformer_ffhq \
        --config.data.source=folder:/path/to/ffhq256

FFHQ needs a manual download (github.com/NVlabs/ffhq-dataset): put the images (any size; they are resized to
256) in a folder and point data.source at it. K = 16 local latents of d = 32 (latent size 512, z_dim 544), latent
self-attention in the mapping, global style modulation, centroid keys (--kmeans), RMS layer norm with
multiplicative integration, attention dropout 0.12, attention at 4-128 px (log2 r < 8), channels min(32768 / r, 512),
R1 gamma 10 (lazy, every 16 D steps), mirror on, batch 32, Adam 0.002 (0, 0.99), G EMA half-life 10 kimg,
style mixing 0.9, 25,000 kimg nominal. The other paper configs derive from this one.
"""

from configs.recipes import gansformer as gansformer_recipe


def get_config():
    return gansformer_recipe.paper_config(num_latents=16, latent_dim=32, r1_gamma=10.0, mirror=True,
                                          source="folder:data/ffhq")
