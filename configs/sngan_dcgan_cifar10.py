"""Table 5 baseline of GIU-GANs: SNGAN on CIFAR-10 (spectral norm in D, hinge loss) on the same DCGAN.

D without BN, LeakyReLU 0.1, G with BN and no spectral norm; 5 D steps per G step, Adam 2e-4 betas (0, 0.9)
(the settings of the SN-GAN lineage the paper's hyper-parameters come from, docs/decisions.md#gf-0).
G 1,183,616 + D 662,528 = 1,846,144 parameters.
"""

from configs import giu_baseline_cifar10


def get_config():
    config = giu_baseline_cifar10.get_config()
    config.model.spectral_norm = True
    config.model.giu.g_spectral_norm = False
    config.loss.name = "hinge"
    config.loss.gp_weight = 0.0
    return config
