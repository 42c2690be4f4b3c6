"""Configs shared by test modules (importable: `from tests.fixtures import tiny_config`, also in subprocesses)."""

from __future__ import annotations

from configs import base


def tiny_config(algebra: str = 'quaternion', num_steps: int = 4):
    """A QSNGAN at 8x8 px with widths of 8 on 32 images of the embedded CIFAR-10 sample: seconds on a CPU."""
    config = base.get_config()
    config.model.name = 'sngan'
    config.model.algebra = algebra
    config.model.resolution = 8
    config.model.g_multipliers = (1, 1)
    config.model.d_multipliers = (1, 1)
    config.model.d_downsamples = 1
    config.model.z_dim = 8
    config.model.g_width = 8
    config.model.d_width = 8
    config.model.channels = 0
    config.data.source = 'sample:cifar10'
    config.data.image_size = 8
    config.data.max_examples = 32
    config.data.quaternion = 'zero' if algebra == 'quaternion' else 'none'
    config.train.num_steps = num_steps
    config.train.batch_size = 8
    config.train.n_critic = 2
    config.train.log_every = 2
    config.train.ema_decay = 0.9
    config.train.tensorboard = False
    config.checkpoint.every_steps = 2
    config.checkpoint.keep = 5
    config.sample.every_steps = 2
    config.sample.num_images = 4
    return config
