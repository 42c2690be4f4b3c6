"""QSNGAN_128 on CelebA-HQ at 128x128 (docs/decisions.md#qp-9-2, #qp-12:
QSNGAN_128.txt).

CelebA-HQ needs a manual download: prepare TFDS `celeb_a_hq/128` (see the TFDS catalogue) or point
--config.data.source at a folder: or npz: copy of the 30k images at 128x128.
G 9,631,204 and D 7,260,673 parameters.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "sngan"
    config.model.algebra = "quaternion"
    config.model.resolution = 128
    config.model.g_width = 64
    config.model.g_multipliers = (16, 16, 8, 4, 2, 1)   # 1024 head, re0..re4 -> 1024, 512, 256, 128, 64
    config.model.d_width = 64
    config.model.d_multipliers = (1, 2, 4, 8, 16, 16)   # re1..re6: 64, 128, 256, 512, 1024, 1024
    config.model.d_downsamples = 5
    config.model.d_head_bias = True
    config.data.source = "tfds:celeb_a_hq/128"
    config.data.image_size = 128
    config.data.quaternion = "zero"
    config.train.n_critic = 5
    config.train.num_steps = 22_000     # ~235 epochs of 30k images at n_critic 5 (docs/decisions.md#qp-12).
    return config
