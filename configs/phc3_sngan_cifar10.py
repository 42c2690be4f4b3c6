"""PHC-3 SNGAN_32 on CIFAR-10: n = 3 acts on plain RGB images (no quaternion padding).

Widths must be multiples of 3: 255 (G) and 126 (D) instead of 256 and 128.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "sngan"
    config.model.algebra = "phc"
    config.model.phc_n = 3
    config.model.channels = 3
    config.model.g_width = 255
    config.model.d_width = 126
    config.data.source = "tfds:cifar10"
    config.data.quaternion = "none"
    config.train.n_critic = 5
    return config
