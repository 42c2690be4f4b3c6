"""Table 5 baseline of GIU-GANs: DCGAN on CIFAR-10 (non-saturating loss, BN in G and D, no spectral norm).

Same DCGAN layout as configs/giu_baseline_cifar10.py (LeakyReLU 0.2 as in DCGAN), one D step per G step.
G 1,183,616 + D 663,296 = 1,846,912 parameters.
"""

from configs import giu_baseline_cifar10


def get_config():
    config = giu_baseline_cifar10.get_config()
    config.model.spectral_norm = False
    config.model.giu.g_spectral_norm = False
    config.model.giu.d_batch_norm = True
    config.model.giu.d_leaky_slope = 0.2
    config.loss.name = "non_saturating"
    config.loss.gp_weight = 0.0
    config.optimizer.g.b1 = 0.5             # Radford et al.: Adam 2e-4, beta1 0.5.
    config.optimizer.d.b1 = 0.5
    config.optimizer.g.b2 = 0.999
    config.optimizer.d.b2 = 0.999
    config.train.n_critic = 1
    return config
