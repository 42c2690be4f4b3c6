"""Tests for qgan_jax.data: sources, host transforms, preprocessing / quaternion mapping, deterministic sharded
batches and actionable errors."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from qgan_jax import data


def _config(**fields) -> ml_collections.ConfigDict:
    config = data.default_config()
    config.update(fields)
    return config


def _random_images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def npz_file(tmp_path):
    images = _random_images((20, 8, 6, 3))
    labels = np.arange(20) % 4
    path = tmp_path / 'set.npz'
    np.savez(path, image=images, label=labels)
    return path, images, labels


# ---------------------------------------------------------------------------------------------- source strings


def test_parse_source():
    assert data.parse_source('tfds:cifar10') == ('tfds', 'cifar10', 'train')
    assert data.parse_source('tfds:emnist/letters:test[:10%]') == ('tfds', 'emnist/letters', 'test[:10%]')
    assert data.parse_source('npz:/a/b.npz') == ('npz', '/a/b.npz', None)
    assert data.parse_source('folder:imgs') == ('folder', 'imgs', None)
    assert data.parse_source('sample:cifar10') == ('sample', 'cifar10', None)


@pytest.mark.parametrize('source', ['cifar10', 'hdf5:x.h5', 'npz:', 'tfds:', 'sample:mnist'])
def test_bad_source_string_is_a_clear_error(source):
    with pytest.raises(ValueError, match='data.source='):
        data.load_array(_config(source=source))


def test_unknown_option_values_are_clear_errors(npz_file):
    path = npz_file[0]
    with pytest.raises(ValueError, match="data.quaternion='real'.*none, zero, reference"):
        data.load_array(_config(source=f'npz:{path}', quaternion='real'))
    with pytest.raises(ValueError, match='data.resize_method'):
        data.load_array(_config(source=f'npz:{path}', resize_method='area'))
    with pytest.raises(ValueError, match='data.channels=2'):
        data.load_array(_config(source=f'npz:{path}', channels=2))


# ---------------------------------------------------------------------------------------------- npz


def test_npz_source_round_trips_and_keeps_labels(npz_file):
    path, images, labels = npz_file
    np.testing.assert_array_equal(data.load_array(_config(source=f'npz:{path}')), images)
    source = data.make_source(_config(source=f'npz:{path}'))
    np.testing.assert_array_equal(source.labels, labels)
    assert source.num_examples == 20 and source.image_shape == (8, 6, 3)


def test_npz_center_crop_resize_and_class_filter(npz_file):
    path, images, labels = npz_file
    cropped = data.load_array(_config(source=f'npz:{path}', center_crop=True))
    np.testing.assert_array_equal(cropped, images[:, 1:7, :, :])
    resized = data.load_array(_config(source=f'npz:{path}', image_size=4, center_crop=True))
    expected = np.asarray(Image.fromarray(images[0, 1:7]).resize((4, 4), Image.Resampling.BILINEAR))
    assert resized.shape == (20, 4, 4, 3) and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized[0], expected)
    source = data.make_source(_config(source=f'npz:{path}', classes=(1, 3), max_examples=7))
    assert source.num_examples == 7 and set(source.labels) == {1, 3}
    np.testing.assert_array_equal(source.images, images[np.isin(labels, (1, 3))][:7])


def test_npz_grayscale_channels(tmp_path):
    gray = _random_images((5, 4, 4))
    np.savez(tmp_path / 'g.npz', image=gray)
    assert data.load_array(_config(source=f'npz:{tmp_path}/g.npz')).shape == (5, 4, 4, 1)
    rgb = data.load_array(_config(source=f'npz:{tmp_path}/g.npz', channels=3))
    np.testing.assert_array_equal(rgb, np.repeat(gray[..., None], 3, axis=-1))
    with pytest.raises(ValueError, match='data.channels=3'):
        data.load_array(_config(source=f'npz:{tmp_path}/g.npz', quaternion='zero'))
    with pytest.raises(ValueError, match='needs labels'):
        data.load_array(_config(source=f'npz:{tmp_path}/g.npz', classes=(1,)))
    back = data.load_array(_config(source=f'npz:{tmp_path}/g.npz', channels=3, quaternion='zero'))
    assert back.shape == (5, 4, 4, 3)


def test_npz_missing_or_malformed_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='no file'):
        data.load_array(_config(source=f'npz:{tmp_path}/absent.npz'))
    np.savez(tmp_path / 'bad.npz', pixels=np.zeros((2, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match='no `image`'):
        data.load_array(_config(source=f'npz:{tmp_path}/bad.npz'))
    np.savez(tmp_path / 'float.npz', image=np.zeros((2, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match='must be uint8'):
        data.load_array(_config(source=f'npz:{tmp_path}/float.npz'))


# ---------------------------------------------------------------------------------------------- folder


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_source_with_class_subfolders(tmp_path):
    cats = [_random_images((6, 6, 3), seed) for seed in range(3)]
    dogs = [_random_images((6, 6, 3), seed) for seed in range(3, 5)]
    for i, image in enumerate(cats):
        _write_png(tmp_path / 'cat' / f'{i}.png', image)
    _write_png(tmp_path / 'dog' / 'deep' / 'a.png', dogs[0])
    _write_png(tmp_path / 'dog' / 'b.PNG', dogs[1])
    (tmp_path / 'notes.txt').write_text('not an image')
    source = data.make_source(_config(source=f'folder:{tmp_path}'))
    assert source.label_names == ('cat', 'dog')
    np.testing.assert_array_equal(source.labels, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(source.images, np.stack(cats + [dogs[1], dogs[0]]))  # Sorted paths.
    dog_only = data.make_source(_config(source=f'folder:{tmp_path}', classes=('dog',)))
    assert dog_only.num_examples == 2 and set(dog_only.labels) == {1}


def test_folder_mixed_modes_and_sizes(tmp_path):
    _write_png(tmp_path / 'a.png', _random_images((8, 10, 3)))
    _write_png(tmp_path / 'b.png', _random_images((5, 5)))                    # Grayscale.
    _write_png(tmp_path / 'c.png', _random_images((6, 6, 4)))                 # RGBA.
    with pytest.raises(ValueError, match='data.image_size'):
        data.load_array(_config(source=f'folder:{tmp_path}'))
    images = data.load_array(_config(source=f'folder:{tmp_path}', image_size=4, center_crop=True))
    assert images.shape == (3, 4, 4, 3) and images.dtype == np.uint8
    gray = data.load_array(_config(source=f'folder:{tmp_path}', image_size=4, channels=1))
    assert gray.shape == (3, 4, 4, 1)
    assert data.make_source(_config(source=f'folder:{tmp_path}', image_size=4)).labels is None


def test_folder_missing_or_empty_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='no directory'):
        data.load_array(_config(source=f'folder:{tmp_path}/absent'))
    with pytest.raises(FileNotFoundError, match='no image files'):
        data.load_array(_config(source=f'folder:{tmp_path}'))


# ---------------------------------------------------------------------------------------------- embedded sample


def test_embedded_cifar10_sample():
    source = data.make_source(_config(source='sample:cifar10'))
    assert source.images.shape == (2000, 32, 32, 3) and source.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(source.labels), [200] * 10)
    assert source.label_names[6] == 'frog'
    frogs = data.make_source(_config(source='sample:cifar10', classes=('frog',)))
    np.testing.assert_array_equal(frogs.images, source.images[source.labels == 6])
    assert data.load_array(_config(source='sample:cifar10', classes=(6,))).shape == (200, 32, 32, 3)


# ---------------------------------------------------------------------------------------------- preprocess


def test_quaternion_mappings_are_exact():
    images = _random_images((3, 4, 4, 3))
    images[0, 0, 0] = (0, 255, 128)
    scaled = (images / 127.5 - 1.0).astype(np.float32)
    plain = data.preprocess(images, _config(quaternion='none'))
    assert plain.dtype == jnp.float32 and plain.shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(plain, scaled)  # Correctly rounded, hence exact.
    np.testing.assert_array_equal(plain[0, 0, 0, :2], [-1.0, 1.0])
    zero = data.preprocess(images, _config(quaternion='zero'))
    assert zero.shape == (3, 4, 4, 4)
    np.testing.assert_array_equal(zero[..., 0], 0.0)
    np.testing.assert_array_equal(zero[..., 1:], plain)
    reference = data.preprocess(images, _config(quaternion='reference'))
    np.testing.assert_array_equal(reference[..., 0], -1.0)
    np.testing.assert_array_equal(reference[..., 1:], plain)
    jitted = jax.jit(lambda x: data.preprocess(x, _config(quaternion='zero')))(images)
    np.testing.assert_array_equal(jitted, zero)
    assert data.num_channels(_config(quaternion='reference'), 3) == 4
    for mode in data.QUATERNION_MODES:  # to_uint8 inverts the mapping (the real part is dropped).
        config = _config(quaternion=mode)
        np.testing.assert_array_equal(data.to_uint8(data.preprocess(images, config), config), images)


def test_random_flip():
    images = _random_images((32, 4, 5, 3))
    config = _config(random_flip=True)
    out = np.asarray(data.preprocess(images, config, jax.random.key(0)))
    scaled = (images / 127.5 - 1.0).astype(np.float32)
    flipped = np.array([np.array_equal(o, s[:, ::-1]) for o, s in zip(out, scaled)])
    kept = np.array([np.array_equal(o, s) for o, s in zip(out, scaled)])
    assert np.all(flipped ^ kept) and 0 < flipped.sum() < 32
    np.testing.assert_array_equal(data.preprocess(images, config, jax.random.key(0)), out)
    with pytest.raises(ValueError, match='random_flip=True needs a PRNG key'):
        data.preprocess(images, config)
    np.testing.assert_array_equal(data.preprocess(images, _config(), jax.random.key(0)), scaled)


# ---------------------------------------------------------------------------------------------- batches


def _array_source(num_examples=10, process_index=0, process_count=1):
    images = np.arange(num_examples, dtype=np.uint8).reshape(num_examples, 1, 1, 1)
    labels = np.arange(num_examples, dtype=np.int32)
    return data.Source(images, labels, None, process_index, process_count)


def test_batches_are_a_function_of_seed_and_step():
    a, b = _array_source(), _array_source()
    np.testing.assert_array_equal(a.host_batch(7, 4, seed=3)['image'], b.host_batch(7, 4, seed=3)['image'])
    assert not np.array_equal(a.host_batch(7, 4, seed=3)['label'], a.host_batch(7, 4, seed=4)['label'])
    straight = [batch['label'] for _, batch in zip(range(9), a.host_batches(4, seed=3))]
    resumed = [batch['label'] for _, batch in zip(range(4), b.host_batches(4, seed=3, start_step=5))]
    np.testing.assert_array_equal(np.stack(straight[5:]), np.stack(resumed))
    # Epochs without replacement: 10 examples, batch 5 -> steps (0, 1) and (2, 3) each cover every example once.
    labels = [a.host_batch(step, 5, seed=1)['label'] for step in range(4)]
    assert sorted(np.concatenate(labels[:2])) == list(range(10))
    assert sorted(np.concatenate(labels[2:])) == list(range(10))
    assert not np.array_equal(np.concatenate(labels[:2]), np.concatenate(labels[2:]))
    # A batch larger than the dataset spans several epochs.
    assert np.bincount(data.batch_indices(0, 0, 3, 9), minlength=3).tolist() == [3, 3, 3]


def test_host_sharding_splits_the_global_batch():
    global_labels = _array_source(40).host_batch(5, 16, seed=2)['label']
    shards = [_array_source(40, p, 4).host_batch(5, 16, seed=2)['label'] for p in range(4)]
    assert all(shard.shape == (4,) for shard in shards)
    np.testing.assert_array_equal(np.concatenate(shards), global_labels)
    assert len(set(np.concatenate(shards).tolist())) == 16
    with pytest.raises(ValueError, match='multiple of the process count 4'):
        _array_source(40, 0, 4).host_batch(0, 10, seed=0)
    with pytest.raises(ValueError, match='process_index'):
        data.make_source(_config(), process_index=2, process_count=2)


# ---------------------------------------------------------------------------------------------- tfds


def test_importing_data_does_not_import_tensorflow():
    code = 'import sys, qgan_jax.data; assert "tensorflow" not in sys.modules, "tensorflow imported"'
    subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


@pytest.mark.slow
def test_tfds_unprepared_offline_is_an_actionable_error(tmp_path):
    config = _config(source='tfds:mnist', tfds_data_dir=str(tmp_path / 'nothing'), tfds_download=False)
    with pytest.raises(FileNotFoundError, match=r'not prepared.*--config\.data\.source.*npz:.*folder:'):
        data.load_array(config)
    with pytest.raises(ValueError, match="TFDS has no dataset 'no_such_dataset'"):
        data.load_array(_config(source='tfds:no_such_dataset', tfds_data_dir=str(tmp_path)))


@pytest.mark.slow
def test_tfds_failed_download_is_an_actionable_error(tmp_path, monkeypatch):
    tfds = pytest.importorskip('tensorflow_datasets')

    def offline(*args, **kwargs):
        raise ConnectionError('Failed to resolve storage.googleapis.com')

    monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', offline)
    config = _config(source='tfds:mnist', tfds_data_dir=str(tmp_path), tfds_download=True)
    with pytest.raises(FileNotFoundError, match=r'could not download.*ConnectionError.*--config\.data\.source'):
        data.load_array(config)


@pytest.mark.slow
def test_tfds_source_reads_labels_filters_and_resizes(tmp_path):
    tfds = pytest.importorskip('tensorflow_datasets')
    config = _config(source='tfds:mnist:test', tfds_data_dir=str(tmp_path), tfds_download=True, classes=('3',),
                     channels=3, image_size=16, max_examples=5)
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        source = data.make_source(config)
    assert source.images.shape == (5, 16, 16, 3) and source.images.dtype == np.uint8
    assert source.label_names[3] == '3' and set(source.labels) == {3}


def test_to_uint8_rounds_like_the_fid_quantiser():
    from qgan_jax.metrics import inception
    halves = (np.arange(256, dtype=np.float64) + 0.5) / 127.5 - 1.0      # exactly between two uint8 levels
    x = np.concatenate([halves, [-1.5, -1.0, 0.0, 1.0, 1.5]]).astype(np.float32).reshape(1, -1, 1, 1)
    x = np.repeat(x, 3, axis=-1)
    got = data.to_uint8(x, ml_collections.ConfigDict({'quaternion': 'none'}))
    np.testing.assert_array_equal(got, np.asarray(inception.quantize(x)))
    assert got[0, 0, 0, 0] == 1 and got[0, -5, 0, 0] == 0 and got[0, -1, 0, 0] == 255
