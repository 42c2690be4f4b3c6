"""The evaluator: feature networks, metrics against their definitions, protocol records, best checkpoints."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from qgan_jax import data, evaluation, train
from qgan_jax.metrics import classifier, fid, kid, prdc

ROOT = pathlib.Path(__file__).resolve().parents[1]
CIFAR10_TEST = ROOT.parent / 'shared' / 'data' / 'cifar10' / 'cifar10_test.npz'


def test_packaged_classifier_is_small_and_records_its_accuracy():
    asset = ROOT / 'qgan_jax' / 'assets' / classifier.ASSET
    assert asset.stat().st_size <= 5e6
    network = classifier.load_classifier()
    assert network.metadata['test_accuracy'] >= 0.80
    out = network(data.load_array(data.default_config())[:16])
    assert out['features'].shape == (16, 8 * network.width) and out['logits'].shape == (16, 10)
    with pytest.raises(ValueError, match=r'uint8 RGB \(N, 32, 32, 3\)'):
        network(np.zeros((2, 28, 28, 1), np.uint8))


@pytest.mark.skipif(not CIFAR10_TEST.is_file(), reason='needs ../shared/data/cifar10/cifar10_test.npz')
def test_packaged_classifier_accuracy_on_the_cifar10_test_split():
    with np.load(CIFAR10_TEST) as f:
        images, labels = f['image'], f['label']
    network = classifier.load_classifier()
    predictions = np.concatenate([np.argmax(np.asarray(network(images[i:i + 1000])['logits']), axis=1)
                                  for i in range(0, len(images), 1000)])
    accuracy = float(np.mean(predictions == labels))
    assert accuracy >= 0.80
    assert accuracy == pytest.approx(network.metadata['test_accuracy'], abs=1e-4)


def test_classifier_weights_round_trip_as_float16(tmp_path):
    model = classifier.CifarClassifier(width=4)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    variables = {'params': variables['params'],
                 'batch_stats': jax.tree.map(lambda x: x + 0.5, variables['batch_stats'])}
    path = tmp_path / 'weights.npz'
    classifier.save_weights(path, variables, 4, test_accuracy=0.5)
    loaded = classifier.load_classifier(path)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    rounded = jax.tree.map(lambda v: np.asarray(v, np.float16).astype(np.float32), variables)
    want = model.apply(rounded, classifier.normalise(images))
    np.testing.assert_allclose(loaded(images)['features'], want['features'], rtol=1e-5, atol=1e-5)
    assert loaded.width == 4 and loaded.metadata == {'test_accuracy': 0.5}
    with pytest.raises(FileNotFoundError, match='do not exist'):
        classifier.load_classifier(tmp_path / 'missing.npz')


def _evaluator(network_name: str, reference: np.ndarray, **kwargs) -> evaluation.Evaluator:
    return evaluation.Evaluator(network=None, network_name=network_name, reference=reference,
                                reference_description='test', num_images=len(reference), **kwargs)


def test_scores_follow_the_metric_definitions():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 6)).astype(np.float32)
    features = rng.normal(0.4, 1.2, size=(250, 6)).astype(np.float32)
    logits = np.zeros((250, 10), np.float32)
    logits[np.arange(250), np.r_[np.zeros(200, int), np.arange(50) % 5 + 1]] = 5.0
    scores = _evaluator('classifier', reference, metrics=evaluation.METRICS[:1] + ('kid', 'prdc', 'classes'))
    got = scores.scores({'features': features, 'logits': logits})
    f64, r64 = features.astype(np.float64), reference.astype(np.float64)
    assert got['fcd'] == pytest.approx(fid.frechet_distance(f64.mean(0), np.cov(f64, rowvar=False), r64.mean(0),
                                                            np.cov(r64, rowvar=False)), rel=1e-9)
    assert (got['kid_mean'], got['kid_std']) == pytest.approx(kid.kernel_inception_distance(reference, features))
    for name, value in prdc.precision_recall_density_coverage(reference, features).items():
        assert got[name] == pytest.approx(value)
    # 80 % in class 0, 4 % in each of classes 1-5: six classes hold >= 2.5 %.
    assert got['classes_covered'] == 6 and got['class_max_share'] == pytest.approx(0.8)
    assert 'fid' not in got and 'is_mean' not in got


def test_inception_scores_are_named_fid_and_include_the_inception_score():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(64, 4))
    logits = rng.normal(size=(64, 1008))
    got = _evaluator('inception', reference, metrics=('fd', 'is')).scores(
        {'features': rng.normal(size=(64, 4)), 'logits': logits})
    assert set(got) == {'fid', 'is_mean', 'is_std'}
    assert (got['is_mean'], got['is_std']) == pytest.approx(fid.inception_score(logits))


def test_prdc_reference_rows_are_capped():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(50, 3))
    features = rng.normal(size=(40, 3))
    got = _evaluator('classifier', reference, metrics=('prdc',), prdc_max_reference=20).scores(
        {'features': features, 'logits': np.zeros((40, 10))})
    rows = np.sort(np.random.RandomState(1).choice(50, 20, replace=False))
    assert got == pytest.approx(prdc.precision_recall_density_coverage(reference[rows], features))


def _config(**eval_fields):
    config = base.get_config()
    for name, value in eval_fields.items():
        config.eval[name] = value
    return config


@pytest.mark.parametrize('fields,message', [
    (dict(network='vgg'), r"eval\.network='vgg' is unknown"),
    (dict(network='classifier', metrics=('fd', 'is')), r"'is' \(Inception Score\) needs eval\.network='inception'"),
    (dict(metrics=('fd', 'classes')), r"'classes' needs eval\.network='classifier'"),
    (dict(metrics=('fd', 'sharpness')), r"eval\.metrics has unknown entries \['sharpness'\]"),
    (dict(best_metric='recall', metrics=('fd',)), r"eval\.best_metric='recall' is not among eval\.metrics"),
    (dict(best_metric='sharpness'), r"eval\.best_metric='sharpness' is unknown"),
    (dict(network='classifier', num_images=100), r'eval\.num_images=100 must be >= 128'),
    (dict(network='classifier', metrics=('fd', 'classes', 'prdc'), best_metric='kid'),
     r"eval\.best_metric='kid' is not among eval\.metrics=\('fd', 'classes', 'prdc'\)"),
    (dict(reference='imagenet'), r"data\.source='imagenet' is not understood"),
])
def test_bad_eval_fields_are_one_line_errors(fields, message):
    with pytest.raises(ValueError, match=message) as info:
        evaluation.validate(_config(**fields))
    assert '\n' not in str(info.value)


def test_default_metrics_are_those_the_network_supports():
    assert evaluation.metrics_of(_config()) == ('fd', 'is', 'kid', 'prdc')
    assert evaluation.metrics_of(_config(network='classifier')) == ('fd', 'kid', 'prdc', 'classes')
    evaluation.validate(_config(network='classifier', num_images=5000))


def test_best_metric_names_and_directions():
    assert evaluation.best_metric(_config()) == ('fid', 'min')
    assert evaluation.best_metric(_config(network='classifier', metrics=('fd',))) == ('fcd', 'min')
    assert evaluation.best_metric(_config(best_metric='recall')) == ('recall', 'max')
    assert evaluation.best_metric(_config(best_metric='')) is None


def test_reference_features_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv('QGAN_JAX_CACHE', str(tmp_path))
    network = classifier.load_classifier()
    images = data.load_array(data.default_config())[:300]
    first = evaluation.reference_features(network, images, 100, 'sample')
    monkeypatch.setattr(evaluation, 'extract_features', lambda *a, **k: pytest.fail('recomputed'))
    np.testing.assert_array_equal(evaluation.reference_features(network, images, 100, 'sample'), first)
    assert first.shape == (300, 128)


def test_in_loop_classifier_evaluation_records_protocol_and_keeps_the_best_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv('QGAN_JAX_CACHE', str(tmp_path / 'cache'))
    config = base.get_config()
    config.model.z_dim = 8
    config.model.g_width = 8
    config.model.d_width = 8
    config.data.source = 'sample:cifar10'
    config.data.max_examples = 256
    config.train.num_steps = 2
    config.train.batch_size = 8
    config.train.n_critic = 1
    config.train.ema_decay = 0.9
    config.train.tensorboard = False
    config.sample.num_images = 4
    config.sample.standing_batches = 2
    config.eval.every_steps = 1
    config.eval.network = 'classifier'
    config.eval.metrics = ('fd', 'kid', 'classes')
    config.eval.num_images = 128
    config.eval.best_metric = 'kid'
    train.train_and_evaluate(config, tmp_path / 'run')
    records = [json.loads(line) for line in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()]
    evaluations = [r for r in records if 'fcd' in r]
    assert [r['step'] for r in evaluations] == [1, 2]
    protocol = evaluations[-1]['protocol']
    assert protocol['network'] == 'classifier' and protocol['num_images'] == 128
    assert protocol['reference'] == 'sample:cifar10 (training data)' and protocol['reference_num_images'] == 256
    assert protocol['generator'] == 'ema' and protocol['bn_statistics'] == 'standing'
    assert all(r['train_seconds'] >= 0 for r in evaluations)
    best = min(evaluations, key=lambda r: r['kid_mean'])['step']
    assert sorted(p.name for p in (tmp_path / 'run' / 'checkpoints_best').iterdir()) == [str(best)]
    # --mode=evaluate scores the latest checkpoint on the same path and writes evaluation.json.
    record = train.evaluate(config, tmp_path / 'run')
    assert record['step'] == 2 and record['fcd'] == pytest.approx(evaluations[-1]['fcd'], rel=1e-6)
    assert json.loads((tmp_path / 'run' / 'evaluation.json').read_text())['step'] == 2


def test_fake_real_part_projection():
    images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 4)), jnp.float32)
    config = data.default_config()
    config.quaternion, config.fake_real_part = 'zero', 'data'
    projected = data.project_fakes(images, config)
    np.testing.assert_array_equal(projected[..., 0], 0.0)
    np.testing.assert_array_equal(projected[..., 1:], images[..., 1:])
    config.quaternion = 'reference'
    np.testing.assert_array_equal(data.project_fakes(images, config)[..., 0], -1.0)
    config.fake_real_part = 'free'
    assert data.project_fakes(images, config) is images
    config.fake_real_part, config.quaternion = 'data', 'none'
    assert data.project_fakes(images[..., 1:], config).shape == (2, 4, 4, 3)
    config.fake_real_part = 'zero'
    with pytest.raises(ValueError, match=r"data\.fake_real_part='zero' is unknown"):
        data.project_fakes(images, config)
