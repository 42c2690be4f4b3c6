"""Resampling shared by the model families (the layers themselves come from ``layers.factory.LayerFactory``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

Array = jax.Array


def upsample_nearest(x: Array) -> Array:
    """(N, H, W, C) -> (N, 2H, 2W, C), every pixel repeated 2x2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool_padded(x: Array) -> Array:
    """The reference D pooling: zero-pad 1, 2x2 mean, stride 2, always /4 (docs/decisions.md#d7). H -> H//2 + 1."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)


def avg_pool(x: Array) -> Array:
    """2x2 mean, stride 2, no padding: H -> H//2 (every output sees four image pixels, borders included)."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


D_POOLS = {"padded": avg_pool_padded, "plain": avg_pool}
