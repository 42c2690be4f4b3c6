"""SNGAN_128 (real) on CelebA-HQ 128x128: the real twin of QSNGAN_128 (SNGAN_128.txt).

G 32,150,787 and D 29,017,857 parameters. Data: see qsngan_celebahq128.py.
"""

from configs import qsngan_celebahq128


def get_config():
    config = qsngan_celebahq128.get_config()
    config.model.algebra = "real"
    config.data.quaternion = "none"
    config.train.n_critic = 1
    config.train.num_steps = 110_000
    return config
