"""Streamed data: bitwise equal to the resident path, disjoint host shards, exact resume, the pipeline choice,
clear errors, and flat host memory on a dataset far larger than the resident budget."""

from __future__ import annotations

import logging as std_logging
import pathlib
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

from qgan_jax import checkpointing, data, streaming, train
from tests.fixtures import tiny_config
from tests.test_train import _metrics, _params, fast_compilation  # noqa: F401 (autouse fixture)

psutil = pytest.importorskip('psutil')


def _write_folder(root: pathlib.Path, count: int = 40, size=(12, 10), classes: int = 0, suffix: str = '.png',
                  seed: int = 0) -> pathlib.Path:
    """`count` random RGB images of (H, W) = size (in `classes` sub-folders when classes > 0)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / f'class_{i % classes}' if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f'{i:04d}{suffix}')
    return root


def _config(source: str, pipeline: str = 'stream', **fields):
    config = data.default_config()
    config.source = source
    config.pipeline = pipeline
    config.image_size = 8
    config.center_crop = True
    for name, value in fields.items():
        config[name] = value
    return config


def _assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype
        np.testing.assert_array_equal(a[name], b[name])


# --------------------------------------------------------------------------------------------------------------
# Same data as the resident path.


@pytest.mark.parametrize('classes', [0, 3])
def test_streamed_batches_equal_resident_batches_bitwise(tmp_path, classes):
    root = _write_folder(tmp_path / 'images', count=40, classes=classes)
    resident = data.make_source(_config(f'folder:{root}', 'resident'))
    assert isinstance(resident, data.Source)
    with data.make_source(_config(f'folder:{root}', 'stream', decode_threads=2)) as streamed:
        assert isinstance(streamed, streaming.StreamingSource)
        assert (streamed.num_examples, streamed.image_shape, streamed.label_names) == (
            resident.num_examples, resident.image_shape, resident.label_names)
        assert streamed.host_batch_size(16) == resident.host_batch_size(16)
        for step in (0, 1, 2, 7, 3):  # Out of order: 7 and 3 were not prefetched.
            _assert_batches_equal(streamed.host_batch(step, 16, 5), resident.host_batch(step, 16, 5))
        np.testing.assert_array_equal(streamed.images[:4], resident.images[:4])
        np.testing.assert_array_equal(np.asarray(streamed.images), resident.images)
        np.testing.assert_array_equal(streamed.images[np.array([3, 1])], resident.images[[3, 1]])
        assert len(streamed.images) == 40 and streamed.images.shape == resident.images.shape


def test_prefetch_and_thread_count_do_not_change_the_batches(tmp_path):
    root = _write_folder(tmp_path / 'images', count=20, size=(9, 9))
    batches = []
    for threads, prefetch in ((1, 0), (2, 3)):
        with data.make_source(_config(f'folder:{root}', decode_threads=threads, prefetch=prefetch)) as source:
            batches.append([source.host_batch(step, 8, 1) for step in range(6)])
    for a, b in zip(*batches):
        _assert_batches_equal(a, b)


def test_process_shards_are_disjoint_and_cover_the_global_batch(tmp_path):
    root = _write_folder(tmp_path / 'images', count=40)
    whole = data.make_source(_config(f'folder:{root}', 'stream'))
    shards = [data.make_source(_config(f'folder:{root}', 'stream'), process_index=p, process_count=4)
              for p in range(4)]
    for step in (0, 5):
        rows = [shard.host_rows(step, 16, 3) for shard in shards]
        assert all(len(r) == 4 for r in rows)
        assert not set(rows[0]) & set(rows[1])  # Disjoint within an epoch (40 > 16).
        np.testing.assert_array_equal(np.concatenate(rows), data.batch_indices(3, step, 40, 16))
        np.testing.assert_array_equal(np.concatenate([s.host_batch(step, 16, 3)['image'] for s in shards]),
                                      whole.host_batch(step, 16, 3)['image'])
    with pytest.raises(ValueError, match='multiple of the process count 4'):
        shards[0].host_batch(0, 6, 3)


# --------------------------------------------------------------------------------------------------------------
# The pipeline choice.


def test_auto_streams_over_the_budget_and_keeps_resident_under_it(tmp_path, caplog):
    root = _write_folder(tmp_path / 'images', count=10)  # 10 x 8 x 8 x 3 = 1,920 decoded bytes.
    caplog.set_level(std_logging.INFO)
    source = data.make_source(_config(f'folder:{root}', 'auto', resident_budget_gb=1e-6))  # 1,000 bytes.
    assert isinstance(source, streaming.StreamingSource)
    assert 'streaming' in caplog.text and 'exceed data.resident_budget_gb' in caplog.text
    caplog.clear()
    source = data.make_source(_config(f'folder:{root}', 'auto', resident_budget_gb=1e-5))
    assert isinstance(source, data.Source)
    assert 'resident' in caplog.text and 'fit data.resident_budget_gb' in caplog.text
    assert isinstance(data.make_source(_config('sample:cifar10', 'auto', max_examples=8)), data.Source)


def test_stream_is_refused_for_always_resident_sources_and_unknown_pipelines():
    with pytest.raises(ValueError, match="npz: and sample: sources are always resident"):
        data.make_source(_config('sample:cifar10', 'stream'))
    with pytest.raises(ValueError, match="data.pipeline='fast' is unknown"):
        data.make_source(_config('sample:cifar10', 'fast'))


def test_default_configs_and_gansformer_256_configs():
    from configs import base, gansformer_bedrooms, gansformer_cityscapes, gansformer_ffhq
    assert base.get_config().data.pipeline == data.default_config().pipeline == 'auto'
    assert base.get_config().data.resident_budget_gb == 4.0
    for module in (gansformer_ffhq, gansformer_cityscapes, gansformer_bedrooms):
        assert module.get_config().data.pipeline == 'stream'


# --------------------------------------------------------------------------------------------------------------
# Errors.


def test_unreadable_file_is_named_or_skipped_deterministically(tmp_path, caplog):
    root = _write_folder(tmp_path / 'images', count=12)
    bad = root / '0004.png'
    bad.write_bytes(b'not a png')
    source = data.make_source(_config(f'folder:{root}', prefetch=0))
    with pytest.raises(ValueError, match=r"cannot read image file '.*0004\.png'.*skip_corrupt=True") as info:
        source.images[:]
    assert '\n' not in str(info.value)
    caplog.set_level(std_logging.WARNING)
    skipping = data.make_source(_config(f'folder:{root}', skip_corrupt=True))
    images = np.asarray(skipping.images)
    np.testing.assert_array_equal(images[4], images[5])  # The next readable row stands in for the bad one.
    assert '0004.png' in caplog.text and 'skipped' in caplog.text
    again = data.make_source(_config(f'folder:{root}', skip_corrupt=True, decode_threads=1))
    resident = data.make_source(_config(f'folder:{root}', 'auto', skip_corrupt=True))  # Fits the budget.
    assert isinstance(resident, data.Source)
    np.testing.assert_array_equal(resident.images, images)
    for step in range(4):
        _assert_batches_equal(skipping.host_batch(step, 6, 0), again.host_batch(step, 6, 0))
        _assert_batches_equal(skipping.host_batch(step, 6, 0), resident.host_batch(step, 6, 0))


def test_empty_or_missing_folder_is_a_one_line_error(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no images')
    with pytest.raises(FileNotFoundError, match='no image files') as info:
        data.make_source(_config(f'folder:{tmp_path / "empty"}'))
    assert '\n' not in str(info.value)
    with pytest.raises(FileNotFoundError, match='no directory'):
        data.make_source(_config(f'folder:{tmp_path / "missing"}'))


def test_mismatched_image_sizes_name_the_file(tmp_path):
    root = _write_folder(tmp_path / 'images', count=3, size=(8, 8))
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(root / '0009.png')
    config = _config(f'folder:{root}', image_size=0)
    with pytest.raises(ValueError, match=r'0009\.png gives a \(6, 6, 3\) image'):
        np.asarray(data.make_source(config).images)


class _FakeTfdsSource:
    """What `tfds.data_source` returns: len, random access to decoded examples, dataset_info."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        label = types.SimpleNamespace(names=['a', 'b', 'c'])
        self.dataset_info = types.SimpleNamespace(features={'image': None, 'label': label})

    def __len__(self):
        return len(self.images)

    def __getitem__(self, row):
        return {'image': self.images[row], 'label': self.labels[row]}


def _fake_tfds(monkeypatch, data_source):
    module = types.ModuleType('tensorflow_datasets')
    module.data_source = data_source
    monkeypatch.setitem(sys.modules, 'tensorflow_datasets', module)


def test_tfds_missing_dataset_is_a_one_line_error_naming_it_and_the_prepare_command(monkeypatch):
    def missing(name, split, data_dir, download):
        assert download is False  # Never the network.
        raise FileNotFoundError(f'Dataset {name} not found in {data_dir}\nmore detail')

    _fake_tfds(monkeypatch, missing)
    with pytest.raises(FileNotFoundError) as info:
        data.make_source(_config('tfds:lsun/bedroom', 'stream', tfds_data_dir='/nowhere'))
    message = str(info.value)
    assert '\n' not in message and "'lsun/bedroom'" in message
    assert 'tfds build lsun/bedroom --file_format=array_record' in message


def test_tfds_streams_decoded_examples_with_labels(monkeypatch):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (30, 10, 12, 3), dtype=np.uint8), rng.integers(0, 3, 30)
    _fake_tfds(monkeypatch, lambda name, split, data_dir, download: _FakeTfdsSource(images, labels))
    source = data.make_source(_config('tfds:fake', 'stream', max_examples=25))
    assert source.num_examples == 25 and source.label_names == ('a', 'b', 'c')
    batch = source.host_batch(2, 10, 0)
    rows = source.host_rows(2, 10, 0)
    ops = data._ImageOps(_config('tfds:fake'))
    np.testing.assert_array_equal(batch['image'], np.stack([ops(images[r]) for r in rows]))
    np.testing.assert_array_equal(batch['label'], labels[rows])
    with pytest.raises(ValueError, match='data.classes with a streamed'):
        data.make_source(_config('tfds:fake', 'stream', classes=(1,)))


# --------------------------------------------------------------------------------------------------------------
# Training: exact resume on a streamed source.


def _streamed_tiny_config(root: pathlib.Path, num_steps: int):
    config = tiny_config(num_steps=num_steps)
    config.data.source = f'folder:{root}'
    config.data.pipeline = 'stream'
    config.data.center_crop = True
    config.data.max_examples = 0
    config.data.prefetch = 2
    return config


def test_streamed_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path):
    root = _write_folder(tmp_path / 'images', count=40, size=(12, 10))
    straight, interrupted = tmp_path / 'straight', tmp_path / 'interrupted'
    train.train_and_evaluate(_streamed_tiny_config(root, 4), straight)
    train.train_and_evaluate(_streamed_tiny_config(root, 2), interrupted)
    assert checkpointing.Checkpointer(interrupted, read_only=True).latest_step() == 2
    resumed = _streamed_tiny_config(root, 4)
    resumed.data.prefetch = 0  # Pipeline fields may change on resume without changing the data.
    resumed.data.decode_threads = 1
    train.train_and_evaluate(resumed, interrupted)
    config = _streamed_tiny_config(root, 4)
    for a, b in zip(_params(straight, config), _params(interrupted, config), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r['step'] for r in _metrics(interrupted)] == [1, 2, 3, 4]
    resident = tmp_path / 'resident'  # And the resident path trains to the same parameters.
    config.data.pipeline = 'resident'
    train.train_and_evaluate(config, resident)
    for a, b in zip(_params(straight, config), _params(resident, config), strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------------------------
# Memory: a dataset 10x / 100x the resident budget streams with flat host memory.


class SyntheticReader:
    """`count` RGB images of side `size` made on the fly from the row number (no storage)."""

    label_names = None
    has_labels = False

    def __init__(self, count: int, size: int):
        self.count, self.size = count, size

    def __len__(self) -> int:
        return self.count

    def read(self, row: int):
        value = np.uint8(row % 251)
        image = np.full((self.size, self.size, 3), value, np.uint8)
        image[0, 0] = (row // 65536) % 256, (row // 256) % 256, row % 256
        return image, None

    def describe(self, row: int) -> str:
        return f'synthetic row {row}'


def _rss() -> int:
    return psutil.Process().memory_info().rss


@pytest.mark.parametrize('factor', [10, 100])
def test_host_memory_stays_flat_streaming_a_dataset_far_over_the_budget(monkeypatch, factor):
    reader = SyntheticReader(200_000, 64)  # 2.46 GB decoded.
    monkeypatch.setattr(streaming, 'open_reader', lambda config: reader)
    decoded = 200_000 * 64 * 64 * 3
    config = _config('folder:/synthetic', 'auto', image_size=0, center_crop=False,
                     resident_budget_gb=decoded / factor / 1e9, decode_threads=2, prefetch=2)
    with data.make_source(config) as source:
        assert isinstance(source, streaming.StreamingSource) and source.decoded_bytes == decoded
        for step in range(5):  # Warm-up: thread pools, permutation cache.
            source.host_batch(step, 256, 0)
        start, peak, began = _rss(), 0, time.perf_counter()
        for step in range(5, 125):  # 30,720 images, 12 % of the dataset.
            batch = source.host_batch(step, 256, 0)
            peak = max(peak, _rss())
        seconds = time.perf_counter() - began
    assert batch['image'].shape == (256, 64, 64, 3)
    growth = peak - start
    print(f'\nbudget {decoded / factor / 1e6:.1f} MB ({factor}x under the {decoded / 1e9:.2f} GB dataset): '
          f'RSS {start / 1e6:.0f} MB -> peak {peak / 1e6:.0f} MB (+{growth / 1e6:.1f} MB) over 120 steps of 256, '
          f'{120 * 256 / seconds:.0f} images/s')
    assert growth < 64e6, growth  # A few host batches (3 MB each) at most, not the dataset.


def test_training_streams_a_200k_image_source_with_flat_memory(tmp_path, monkeypatch):
    reader = SyntheticReader(200_000, 8)  # 38 MB decoded; the budget is 100x smaller.
    monkeypatch.setattr(streaming, 'open_reader', lambda config: reader)
    config = tiny_config(num_steps=6)
    config.data.source = 'folder:/synthetic'
    config.data.max_examples = 0
    config.data.pipeline = 'auto'
    config.data.resident_budget_gb = 200_000 * 8 * 8 * 3 / 100 / 1e9
    config.checkpoint.every_steps = 0
    config.sample.every_steps = 0
    train.train_and_evaluate(config, tmp_path / 'run')
    assert [r['step'] for r in _metrics(tmp_path / 'run')][-1] == 6


# --------------------------------------------------------------------------------------------------------------
# Two processes (jax.distributed on localhost) stream disjoint shards and agree.

_STREAM_WORKER = """
import json, sys
import jax
import numpy as np
jax.config.update('jax_disable_most_optimizations', True)
from tests.fixtures import tiny_config
from qgan_jax import parallel, streaming, train
assert parallel.initialize_distributed()
workdir, images = sys.argv[1], sys.argv[2]
decoded = {}
host_batch = streaming.StreamingSource.host_batch

def recording(self, step, global_batch_size, seed):
    decoded[int(step)] = self.host_rows(step, global_batch_size, seed).tolist()
    return host_batch(self, step, global_batch_size, seed)

streaming.StreamingSource.host_batch = recording
config = tiny_config(num_steps=3)
config.data.source, config.data.pipeline, config.data.max_examples = f'folder:{images}', 'stream', 0
config.data.center_crop = True
config.checkpoint.every_steps = 0
state = train.train_and_evaluate(config, workdir)
np.savez(f'{workdir}/state_{jax.process_index()}.npz', *jax.tree.leaves(parallel.to_host(state)))
print(json.dumps({'process': jax.process_index(), 'processes': jax.process_count(), 'rows': decoded}))
"""


@pytest.mark.slow
def test_two_processes_stream_disjoint_shards_and_agree(tmp_path):
    import subprocess

    from tests import test_parallel
    images = _write_folder(tmp_path / 'images', count=40)
    address = f'127.0.0.1:{test_parallel._free_port()}'
    workers = [subprocess.Popen([sys.executable, '-c', _STREAM_WORKER, str(tmp_path / 'run'), str(images)],
                                cwd=test_parallel.ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=test_parallel._env(2, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES='2',
                                                       JAX_PROCESS_ID=str(i))) for i in range(2)]
    try:
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-4000:]
    reports = sorted((test_parallel._last_json(stdout) for stdout, _ in outputs), key=lambda r: r['process'])
    assert [r['process'] for r in reports] == [0, 1] and reports[0]['processes'] == 2
    config = tiny_config()
    steps = sorted(int(s) for s in reports[0]['rows'])
    assert steps[:6] == list(range(6))  # 3 steps x n_critic 2 real batches (and prefetched ones).
    for step in range(6):
        first, second = reports[0]['rows'][str(step)], reports[1]['rows'][str(step)]
        assert len(first) == len(second) == config.train.batch_size // 2
        assert not set(first) & set(second)
        np.testing.assert_array_equal(first + second, data.batch_indices(config.train.seed, step, 40,
                                                                         config.train.batch_size))
    with np.load(tmp_path / 'run' / 'state_0.npz') as a, np.load(tmp_path / 'run' / 'state_1.npz') as b:
        assert len(a.files) > 10
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


def test_fid_reference_reads_a_streamed_dataset_in_chunks_with_the_resident_cache_key(tmp_path):
    from qgan_jax import evaluation
    root = _write_folder(tmp_path / 'images', count=10)
    streamed = data.make_source(_config(f'folder:{root}', 'stream'))
    resident = data.make_source(_config(f'folder:{root}', 'resident'))
    assert evaluation._content_sha256(streamed.images) == evaluation._content_sha256(resident.images)
    chunks = [streamed.images[i:i + 4] for i in range(0, 10, 4)]
    np.testing.assert_array_equal(np.concatenate(chunks), resident.images)


def test_input_pipeline_bench_measures_a_generated_folder(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location('bench_input_pipeline',
                                                  pathlib.Path(__file__).resolve().parents[1] / 'bench' /
                                                  'input_pipeline.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.write_jpegs(tmp_path / 'jpegs', 4, (40, 32))
    result = bench.measure(tmp_path / 'jpegs', 16, True, 1, 4, 0.05)
    assert result['images_per_s'] > 0 and result['images'] >= 4
