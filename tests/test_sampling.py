"""Sampling: standing batch-norm statistics for the sampled weights, and one path for EMA and raw generators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgan_jax import experiment, models, sampling, train
from tests.fixtures import tiny_config


def _generator_and_state(algebra: str, name: str = 'sngan'):
    config = tiny_config(algebra)
    config.model.name = name
    if name == 'dcgan':
        config.model.resolution, config.data.image_size = 16, 16
    built = experiment.build(config)
    config, generator = built.config, built.generator
    variables = generator.init(jax.random.PRNGKey(0), jnp.zeros((1, config.model.z_dim)), train=False)
    params = variables['params']
    # Running statistics far from anything a batch gives, so a test cannot pass by leaving them in place.
    state = {'batch_stats': jax.tree.map(lambda x: x + 7.0, variables['batch_stats'])}
    return config, generator, params, state


def test_standing_statistics_average_the_batch_statistics_numpy_reference():
    """Real SNGAN: the first BN layer sees dense(z) reshaped to (N, 4, 4, C); its running variance is PyTorch's
    unbiased one (rbn.BatchNorm, the PyTorch references' semantics)."""
    config, generator, params, state = _generator_and_state('real')
    latents = [jax.random.normal(jax.random.PRNGKey(i), (16, config.model.z_dim)) for i in range(3)]
    standing = sampling.standing_statistics(generator, params, state, latents, jax.random.PRNGKey(9))
    dense = params['fully_connect']
    means, variances = [], []
    for z in latents:
        h = (np.asarray(z, np.float64) @ np.asarray(dense['kernel'], np.float64)
             + np.asarray(dense['bias'], np.float64)).reshape(16, 4, 4, -1)
        means.append(h.mean(axis=(0, 1, 2)))
        variances.append(h.var(axis=(0, 1, 2), ddof=1))
    got = standing['batch_stats']['re0']['batch_norm1']
    np.testing.assert_allclose(got['mean'], np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got['var'], np.mean(variances, axis=0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('algebra,name', [('real', 'sngan'), ('quaternion', 'sngan'), ('quaternion', 'dcgan')])
def test_standing_statistics_of_one_batch_make_eval_mode_equal_train_mode(algebra, name):
    """Statistics of one batch, used in eval mode on that batch, reproduce the train-mode forward in every BN layer
    (PyTorch-semantics BN and quaternion BN, both with PyTorch momentum and unbiased running variance)."""
    config, generator, params, state = _generator_and_state(algebra, name)
    z = jax.random.normal(jax.random.PRNGKey(1), (64, config.model.z_dim))
    standing = sampling.standing_statistics(generator, params, state, [z], jax.random.PRNGKey(2))
    train_mode, _ = models.apply(generator, params, state, z, train=True)
    eval_mode = generator.apply({'params': params, **standing}, z, train=False)
    stale = generator.apply({'params': params, **state}, z, train=False)
    # Unbiased running variances differ from the normalising (biased) ones by N/(N-1) over >= 1,024 values.
    np.testing.assert_allclose(eval_mode, train_mode, atol=2e-3)
    assert np.abs(np.asarray(stale) - np.asarray(train_mode)).max() > 0.1


def _state_with(params, g_state, ema_params):
    return train.GANState(step=jnp.zeros((), jnp.int32), g_params=params, d_params={}, g_state=g_state, d_state={},
                          g_opt_state={}, d_opt_state={}, ema_params=ema_params, rng=jax.random.PRNGKey(0))


def test_ema_and_raw_paths_agree_when_the_weights_are_equal():
    config, generator, params, state = _generator_and_state('quaternion')
    config.sample.bn_statistics = 'standing'
    gan_state = _state_with(params, state, jax.tree.map(jnp.copy, params))
    key = jax.random.PRNGKey(3)
    ema_params, ema_stats, ema_info = sampling.sampling_variables(config, generator, gan_state, key)
    raw_params, raw_stats, raw_info = sampling.sampling_variables(config, generator, gan_state, key, use_ema=False)
    assert ema_info == {'generator': 'ema', 'bn_statistics': 'standing'}
    assert raw_info == {'generator': 'g', 'bn_statistics': 'standing'}
    z = jax.random.normal(jax.random.PRNGKey(4), (8, config.model.z_dim))
    np.testing.assert_array_equal(generator.apply({'params': ema_params, **ema_stats}, z),
                                  generator.apply({'params': raw_params, **raw_stats}, z))


def test_auto_statistics_and_generators_without_batch_norm():
    config, generator, params, state = _generator_and_state('quaternion')
    gan_state = _state_with(params, state, params)
    assert config.sample.bn_statistics == 'auto'
    _, stats, info = sampling.sampling_variables(config, generator, gan_state, jax.random.PRNGKey(0))
    assert info['bn_statistics'] == 'standing' and not np.allclose(
        stats['batch_stats']['bn']['var'], state['batch_stats']['bn']['var'])
    _, stats, info = sampling.sampling_variables(config, generator, gan_state, jax.random.PRNGKey(0), use_ema=False)
    assert info == {'generator': 'g', 'bn_statistics': 'running'} and stats is state
    config.model.batch_norm = False
    generator, _ = models.build(config)
    variables = generator.init(jax.random.PRNGKey(0), jnp.zeros((1, config.model.z_dim)))
    _, stats, info = sampling.sampling_variables(
        config, generator, _state_with(variables['params'], {}, variables['params']), jax.random.PRNGKey(0))
    assert info['bn_statistics'] == 'none' and stats == {}
    config.sample.bn_statistics = 'batch'
    with pytest.raises(ValueError, match=r"sample\.bn_statistics='batch' is unknown"):
        sampling.statistics_mode(config, True)
