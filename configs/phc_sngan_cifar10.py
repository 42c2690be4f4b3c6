"""PHC-4 SNGAN_32 on CIFAR-10: QSNGAN_32 with learned algebra matrices A (n = 4, 4-channel images).

Parameter count = QSNGAN_32 + 64 per hypercomplex layer (the A tensors).
"""

from configs import qsngan_cifar10


def get_config():
    config = qsngan_cifar10.get_config()
    config.model.algebra = "phc"
    config.model.phc_n = 4
    return config
