"""Generating images from a trained generator: which weights and batch-norm statistics, jitted generation.

Sampling uses the EMA weights when `train.ema_decay > 0`. A generator with batch norm also needs statistics that
belong to the weights it samples with: the running statistics in the training state were accumulated by the *raw*
weights, and evaluating the EMA weights with them gives washed-out, low-diversity images. With
`sample.bn_statistics = 'standing'` (BigGAN's standing statistics) the BN statistics are recomputed for the sampled
weights: the average, over `sample.standing_batches` batches of `train.batch_size` latents, of the batch
statistics each BN layer computes in train mode. `'running'` keeps the training state's running statistics;
`'auto'` (the default) is standing for EMA generators and running for the raw one. Grids, `--mode=sample` and
in-loop metrics all go through `sampling_variables`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from qgan_jax import data, models, parallel

BN_STATISTICS = ('auto', 'standing', 'running')
# Leaf names of batch-norm running statistics in the `batch_stats` collection (flax BatchNorm, QuaternionBatchNorm,
# Representative BN); spectral-norm vectors (u, v) and GANsformer's w_avg are other leaves and are never touched.
_BN_LEAVES = ('mean', 'var')


def _is_bn_leaf(path) -> bool:
    last = path[-1]
    return getattr(last, 'key', getattr(last, 'name', None)) in _BN_LEAVES


def has_batch_norm(g_state: Any) -> bool:
    """Whether the generator state holds batch-norm running statistics."""
    return any(_is_bn_leaf(path) for path, _ in jax.tree_util.tree_leaves_with_path(g_state))


def standing_statistics(generator: Any, params: Any, g_state: Any, latents: list[jax.Array], key: jax.Array) -> Any:
    """`g_state` with every BN mean / var replaced by the average of the batch statistics that `params` produce
    in train mode on each batch of `latents` (a list of (B, z_dim) arrays); `key` feeds the models' RNG streams.

    Each BN layer updates `running = a * running + (1 - a) * batch` in train mode, with its own momentum a and its
    own variance convention. A forward from zeroed statistics gives `(1 - a) * batch` and one from ones gives
    `a + (1 - a) * batch`, so a, and then each batch statistic, are read off without knowing the layer. Train mode
    normalises with batch statistics, so the running values never change the forward pass.
    """
    def fill(value):
        return jax.tree_util.tree_map_with_path(
            lambda path, x: jnp.full_like(x, value) if _is_bn_leaf(path) else x, g_state)

    @jax.jit
    def statistics_from(base_value, z, key):
        _, new_state = models.apply(generator, params, fill(base_value), z, train=True, key=key)
        return new_state

    keys = jax.random.split(key, len(latents))
    from_zeros = [statistics_from(0.0, z, k) for z, k in zip(latents, keys)]
    keep = jax.tree.map(lambda ones, zeros: ones - zeros, statistics_from(1.0, latents[0], keys[0]), from_zeros[0])
    mean_from_zeros = jax.tree.map(lambda *xs: sum(xs) / len(xs), *from_zeros)
    standing = jax.tree.map(lambda m, a: m / (1.0 - a), mean_from_zeros, keep)
    return jax.tree_util.tree_map_with_path(lambda path, s, old: s if _is_bn_leaf(path) else old, standing, g_state)


GENERATORS = ('auto', 'ema', 'raw')


def uses_ema(config: ml_collections.ConfigDict, ema_params: Any) -> bool:
    """Whether to sample with the EMA weights: `sample.generator` 'auto' (when train.ema_decay > 0), 'ema' or
    'raw' (the trained weights, e.g. to compare)."""
    choice = config.sample.generator
    if choice not in GENERATORS:
        raise ValueError(f'sample.generator={choice!r} is unknown; allowed: {", ".join(GENERATORS)}')
    has_ema = config.train.ema_decay > 0 and bool(ema_params)
    if choice == 'ema' and not has_ema:
        raise ValueError('sample.generator=ema needs a run trained with train.ema_decay > 0')
    return has_ema if choice == 'auto' else choice == 'ema'


def statistics_mode(config: ml_collections.ConfigDict, ema: bool) -> str:
    """'standing' or 'running' for `config.sample.bn_statistics` ('auto': standing for EMA weights)."""
    mode = config.sample.bn_statistics
    if mode not in BN_STATISTICS:
        raise ValueError(f'sample.bn_statistics={mode!r} is unknown; allowed: {", ".join(BN_STATISTICS)}')
    if mode == 'auto':
        return 'standing' if ema else 'running'
    return mode


def sampling_variables(config: ml_collections.ConfigDict, generator: Any, state: Any, key: jax.Array,
                       use_ema: bool | None = None) -> tuple[Any, Any, dict[str, str]]:
    """(params, g_state, description) to sample with from a `train.GANState`.

    params: the EMA weights when train.ema_decay > 0 (or `use_ema`), else the trained ones. g_state: its
    statistics per `sample.bn_statistics` (standing ones from `key`). description: {'generator': 'ema' | 'g',
    'bn_statistics': 'standing' | 'running' | 'none'}, recorded beside metrics.
    """
    ema = uses_ema(config, state.ema_params) if use_ema is None else use_ema
    params = state.ema_params if ema else state.g_params
    mode = statistics_mode(config, ema) if has_batch_norm(state.g_state) else 'none'
    g_state = state.g_state
    if mode == 'standing':
        latent_key, model_key = jax.random.split(key)
        shape = (int(config.train.batch_size), int(config.model.z_dim))
        latents = [jax.random.normal(k, shape, jnp.float32)
                   for k in jax.random.split(latent_key, int(config.sample.standing_batches))]
        g_state = standing_statistics(generator, params, state.g_state, latents, model_key)
    return params, g_state, {'generator': 'ema' if ema else 'g', 'bn_statistics': mode}


def make_generate(generator: Any, mesh: jax.sharding.Mesh, truncation_psi: float = 1.0,
                  matmul_precision: str = 'default') -> Callable:
    """Jitted `(params, g_state, z) -> images`: G in eval mode (stored statistics), z (N, z_dim) -> (N, H, W, C),
    N sharded on `data` (N must be a multiple of the device count). `truncation_psi` != 1 is passed to generators
    that support truncation (GANsformer) for sample grids and --mode=sample; FID never truncates.
    `matmul_precision`: config.model.matmul_precision, the float32 matmul / conv precision while tracing."""
    batch = parallel.batch_sharding(mesh)
    replicated = parallel.replicated(mesh)
    kwargs = {} if truncation_psi == 1.0 else {'truncation_psi': truncation_psi}

    def generate(params, g_state, z):
        with jax.default_matmul_precision(matmul_precision):
            return generator.apply({'params': params, **g_state}, z, train=False, **kwargs).astype(jnp.float32)

    return jax.jit(generate, in_shardings=(replicated, replicated, batch), out_shardings=batch)


def generate_images(generate: Callable, params: Any, g_state: Any, z: np.ndarray, mesh: jax.sharding.Mesh,
                    batch_size: int, data_config: Any) -> np.ndarray:
    """uint8 (N, H, W, 3 or 1) display images (quaternion real part dropped) for latents z (N, z_dim), generated
    in chunks of `batch_size` (rounded up to a multiple of the device count; the last chunk is padded)."""
    devices = mesh.devices.size
    chunk = -(-max(1, min(batch_size, len(z))) // devices) * devices
    outputs = []
    for start in range(0, len(z), chunk):
        part = np.asarray(z[start:start + chunk], np.float32)
        padded = np.concatenate([part, np.zeros((chunk - len(part), part.shape[1]), np.float32)])
        # Every process holds all latents; it passes the rows of its own devices.
        rows = padded.reshape(jax.process_count(), -1, padded.shape[1])[jax.process_index()]
        images = parallel.to_host(generate(params, g_state, parallel.global_batch(rows, mesh)))
        outputs.append(data.to_uint8(images[:len(part)], data_config))
    return np.concatenate(outputs)
