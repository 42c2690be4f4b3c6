"""An experiment built from a config: the resolved config, the two networks, their optimisers and the image shape.

`build(config)` replaces the recipe resolve -> build the models -> make the optimisers -> image shape that every
entry point (training, sampling, evaluation, summaries, benches, tests) needs before it can make a state or a step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from qgan_jax import models, step


@dataclasses.dataclass(frozen=True, eq=False)
class Experiment:
    """config: resolved (model.channels set, data.quaternion consistent).  generator / discriminator: flax modules.
    g_tx / d_tx: their optimisers (D's with the lazy-R1 correction).  image_shape: D's input (H, W, C)."""

    config: ml_collections.ConfigDict
    generator: Any
    discriminator: Any
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    image_shape: tuple[int, int, int]

    def init_state(self) -> step.GANState:
        """A fresh state from train.seed (jittable: `jax.jit(experiment.init_state, out_shardings=...)()`)."""
        return step.init_state(self.config, self.generator, self.discriminator, self.g_tx, self.d_tx,
                               self.image_shape)

    def abstract_state(self, sharding: jax.sharding.Sharding | None = None) -> step.GANState:
        """The state's shapes and dtypes, allocating nothing: `jax.ShapeDtypeStruct` leaves with `sharding` (the
        target of a checkpoint restore), or as `jax.eval_shape` gives them when `sharding` is None."""
        if sharding is None:
            return jax.eval_shape(self.init_state)
        return step.abstract_state(self.config, self.generator, self.discriminator, self.g_tx, self.d_tx,
                                   self.image_shape, sharding)

    def train_step(self, mesh: jax.sharding.Mesh | None = None) -> Callable:
        """The pure step `(state, batch, key) -> (state, metrics)` of `step.make_train_step`."""
        return step.make_train_step(self.config, self.generator, self.discriminator, self.g_tx, self.d_tx,
                                    mesh=mesh)

    def example_inputs(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """Zero inputs of the networks: latents (batch_size, z_dim) and images (batch_size, H, W, C), float32."""
        return (jnp.zeros((batch_size, self.config.model.z_dim), jnp.float32),
                jnp.zeros((batch_size, *self.image_shape), jnp.float32))

    def variable_shapes(self, batch_size: int = 2) -> tuple[Any, Any]:
        """(G variables, D variables) of an eval-mode init as `jax.ShapeDtypeStruct` trees, allocating nothing."""
        z, images = self.example_inputs(batch_size)
        key = {'params': jax.random.key(0)}
        return (jax.eval_shape(lambda: self.generator.init(key, z, train=False)),
                jax.eval_shape(lambda: self.discriminator.init(key, images, train=False)))


def build(config: ml_collections.ConfigDict) -> Experiment:
    """The experiment of `config` (not validated here: `train.validate_config` does that); `config` is not
    modified."""
    config = models.resolve(config)
    generator, discriminator = models.build(config)
    g_tx, d_tx = step.make_optimizers(config)
    resolution = config.model.resolution
    return Experiment(config=config, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
                      image_shape=(resolution, resolution, config.model.channels))
