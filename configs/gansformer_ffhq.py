"""GANsformer on FFHQ 256x256: the paper's / released settings (spec gansformer.md §5).

    python main.py --config=configs/gansformer_ffhq.py --workdir=runs/gansformer_ffhq \
        --config.data.source=folder:/path/to/ffhq256

FFHQ needs a manual download (github.com/NVlabs/ffhq-dataset): put the images (any size; they are resized to
256) in a folder and point data.source at it. K = 16 local latents of d = 32 (latent size 512, z_dim 544), latent
self-attention in the mapping, global style modulation, centroid keys (--kmeans), RMS layer norm with
multiplicative integration, attention dropout 0.12, attention at 4-128 px (log2 r < 8), channels min(32768 / r, 512),
R1 gamma 10 (lazy, every 16 D steps), mirror on, batch 32, Adam 0.002 (0, 0.99), G EMA half-life 10 kimg,
style mixing 0.9, 25,000 kimg nominal. The other paper configs derive from this one.
"""

from configs import base
from qgan_jax.models import gansformer


def paper_config(*, num_latents: int, latent_dim: int, r1_gamma: float, mirror: bool, source: str,
                 center_crop: bool = False, mapping_self_attention: bool = True, style: bool = True):
    """The released GANformer setting at 256 px with the per-dataset fields of spec §5."""
    config = base.get_config()
    config.model.name = "gansformer"
    config.model.algebra = "real"
    config.model.resolution = 256
    config.model.channels = 0
    config.model.gansformer = gansformer.default_config()
    g = config.model.gansformer
    g.num_latents = num_latents
    g.latent_dim = latent_dim
    g.mapping_self_attention = mapping_self_attention
    g.style = style
    config.model.z_dim = (g.get_ref("num_latents") + 1) * g.get_ref("latent_dim")
    config.data.source = source
    config.data.image_size = 256
    config.data.center_crop = center_crop   # upstream crops to an aspect ratio instead (not ported: spec §7.2).
    config.data.quaternion = "none"
    config.data.random_flip = mirror
    config.data.pipeline = "stream"         # Decoded on demand, each host its shard (README, Data).
    gansformer.apply_training_defaults(config, batch_size=32)
    config.loss.r1_gamma = r1_gamma
    config.train.num_steps = 781_250        # 25,000 kimg at batch 32.
    config.checkpoint.every_steps = 10_000
    config.sample.every_steps = 5_000
    config.eval.every_steps = 50_000
    config.sample.batch_size = 64
    return config


def get_config():
    return paper_config(num_latents=16, latent_dim=32, r1_gamma=10.0, mirror=True, source="folder:data/ffhq")
