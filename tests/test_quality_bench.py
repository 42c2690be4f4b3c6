"""bench/quality.py end to end on tiny runs, the training time budget, config overrides, D pooling option."""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs
from qgan_jax import models, train
from tests.fixtures import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))

import quality  # noqa: E402


def test_quality_runs_write_rows_summary_plot_and_grids(tmp_path, monkeypatch):
    monkeypatch.setenv('QGAN_JAX_CACHE', str(tmp_path / 'cache'))
    out = tmp_path / 'out'
    small = ['model.g_width=8', 'model.d_width=8', 'model.z_dim=8', 'train.batch_size=8', 'sample.standing_batches=2',
             'data.max_examples=256']
    argv = ['--configs=configs/quickstart.py:data.fake_real_part=data', '--steps=2',
            '--eval_every=1', '--num_images=128', '--seeds=0,1', '--data=sample:cifar10',
            '--reference=sample:cifar10', f'--out={out}'] + [f'--set={s}' for s in small]
    assert quality.main(argv) == 0
    result = json.loads((out / 'quality.json').read_text())
    rows = result['rows']
    assert [(r['label'], r['seed'], r['step']) for r in rows] == [
        ('quickstart+data.fake_real_part=data', seed, step) for seed in (0, 1) for step in (1, 2)]
    for row in rows:
        for name in ('config', 'seed', 'step', 'seconds', 'params', 'fcd', 'kid_mean', 'kid_std', 'precision',
                     'recall', 'density', 'coverage'):
            assert row[name] is not None, name
    assert all('border_gap' in r for r in rows if r['step'] == 2)
    assert result['protocol']['network'] == 'classifier' and result['protocol']['num_images'] == 128
    (summary,) = result['summary']
    finals = [r['fcd'] for r in rows if r['step'] == 2]
    assert summary['fcd'] == pytest.approx(np.mean(finals))
    assert summary['fcd_spread'] == pytest.approx(abs(finals[0] - finals[1]))
    assert '| quickstart+data.fake_real_part=data |' in (out / 'quality.md').read_text()
    assert (out / 'quality.png').stat().st_size > 10_000
    assert sorted(p.name for p in (out / 'grids').iterdir()) == [
        'quickstart+data.fake_real_part=data_s0.png', 'quickstart+data.fake_real_part=data_s1.png']


def test_quality_rejects_bad_overrides_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        quality.main(['--configs=configs/quickstart.py:model.g_widht=8', '--steps=1', '--data=sample:cifar10',
                      '--reference=sample:cifar10', f'--out={tmp_path}'])
    assert "the config has no field 'model.g_widht'" in capsys.readouterr().err
    assert not (tmp_path / 'runs').exists()


def test_border_gap():
    images = np.full((2, 4, 4, 3), 100, np.uint8)
    images[:, 1:-1, 1:-1] = 150
    assert quality.border_gap(images) == pytest.approx(-50.0)


def test_config_override_parses_and_type_checks():
    config = configs.load('configs/quickstart.py')
    configs.override(config, 'model.g_width=48')
    configs.override(config, 'optimizer.g.lr=1e-3')
    configs.override(config, 'train.ema_decay=0')
    configs.override(config, 'data.source=npz:/tmp/x.npz')
    configs.override(config, 'model.g_multipliers=[1, 2, 2, 2]')
    assert (config.model.g_width, config.optimizer.g.lr, config.train.ema_decay) == (48, 1e-3, 0.0)
    assert config.data.source == 'npz:/tmp/x.npz' and config.model.g_multipliers == (1, 2, 2, 2)
    for bad, message in (('model.g_width=wide', 'model.g_width is a int'), ('model.nope=1', 'has no field'),
                         ('train.tensorboard=1', 'is a bool'), ('model.g_width', 'field.path=value')):
        with pytest.raises(ValueError, match=message):
            configs.override(config, bad)


def test_time_budget_stops_with_the_final_outputs(tmp_path):
    config = tiny_config(num_steps=10_000)
    config.train.time_budget_minutes = 1e-4
    state = train.train_and_evaluate(config, tmp_path)
    step = int(state.step)
    assert 1 <= step < 10_000
    assert (tmp_path / 'samples' / f'step_{step:07d}.png').is_file()
    assert str(step) in [p.name for p in (tmp_path / 'checkpoints').iterdir()]
    config.train.time_budget_minutes = -1.0
    with pytest.raises(ValueError, match=r'train\.time_budget_minutes=-1\.0 must be >= 0'):
        train.validate_config(config)


def test_plain_discriminator_pooling_keeps_the_parameters():
    config = models.resolve(tiny_config())
    counts = {}
    for pool in ('padded', 'plain'):
        config.model.d_pool = pool
        _, discriminator = models.build(config)
        images = jnp.ones((2, 8, 8, 4))
        variables = discriminator.init(jax.random.PRNGKey(0), images)
        counts[pool] = sum(x.size for x in jax.tree.leaves(variables['params']))
        assert discriminator.apply(variables, images).shape == (2,)
    assert counts['padded'] == counts['plain']
    config.model.d_pool = 'max'
    with pytest.raises(ValueError, match=r"model\.d_pool = 'max' is unknown"):
        models.build(config)
