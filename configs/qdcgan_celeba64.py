"""QDCGAN_64 on CelebA at 64x64 (docs/decisions.md#qp-9-3): quaternion init kept, no biases.

G 952,496 and D 698,469 parameters.
"""

from configs import base


def get_config():
    config = base.get_config()
    config.model.name = "dcgan"
    config.model.algebra = "quaternion"
    config.model.resolution = 64
    config.model.g_width = 64           # ngf
    config.model.d_width = 64           # ndf
    config.model.batch_norm = True
    config.model.spectral_norm = False
    config.model.init = "default"       # quaternion he (G) / glorot (D), as the reference keeps.
    config.data.source = "tfds:celeb_a"
    config.data.center_crop = True
    config.data.image_size = 64
    config.data.quaternion = "zero"
    config.train.n_critic = 1
    return config
