"""DCGAN_64 (real) on CelebA 64x64: the real twin of QDCGAN_64, N(0, 0.02) init.

G 3,806,080 and D 2,765,568 parameters.
"""

from configs import qdcgan_celeba64


def get_config():
    config = qdcgan_celeba64.get_config()
    config.model.algebra = "real"
    config.model.init = "normal"
    config.data.quaternion = "none"
    return config
