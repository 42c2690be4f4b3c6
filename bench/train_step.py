"""Speed of the jitted training iteration, quaternion vs real, measured in one run.

    python bench/train_step.py                       # QSNGAN-32 and SNGAN-32 at batch 64, n_critic 1
    python bench/train_step.py --batch=64,256 --sample_batch=1000 --json=bench.json
    python bench/train_step.py --configs=configs/qdcgan_celeba64.py,configs/dcgan_celeba64.py
    python bench/train_step.py --largest_batch=8192                # also: the largest batch that fits, per config
    python bench/train_step.py --configs=configs/qsngan_cifar10.py:model.dtype=bfloat16   # path:field=value overrides

One iteration = `train.make_train_step` with `--n_critic` discriminator updates (default 1: one D step on a real
batch, then the G step, the reference's iteration with crit_iter = 1) on a synthetic uint8 batch already on the
device, so the input pipeline is measured separately (`input ms`: the trainer's host batch assembly + transfer of
the real sample, which overlaps the device's step; `resident`: a jitted gather from the sample kept on the
device). Prints steps/s, images/s (real images through D per second), XLA's FLOPs per iteration from the
compiled program's cost analysis, the achieved FLOP/s and the wall time of 1M iterations at this speed
(GIU-GAN's schedule); then the ratios of each pair of configs (the first named config over the second, and so
on: quaternion / real, GIU / baseline), and eval-mode sampling throughput at `--sample_batch`.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import configs  # noqa: E402
from qgan_jax import data, parallel, summary, train  # noqa: E402
from qgan_jax import experiment as experiment_lib  # noqa: E402

DEFAULT_CONFIGS = 'configs/qsngan_cifar10.py,configs/sngan_cifar10.py'


def load_config(spec: str):
    """The config of `path[:field=value[:field=value ...]]` (overrides as main.py's --config.field=value)."""
    path, *assignments = spec.split(':')
    config = configs.load(path)
    for assignment in assignments:
        configs.override(config, assignment)
    return config


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on the first local device since the process started (None where not reported)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    return stats.get('peak_bytes_in_use')


def precision_of(config) -> str:
    return f'{config.model.dtype}/{config.model.matmul_precision}'


def _time(fn, repeats: int, min_seconds: float) -> float:
    """Median seconds per call of `fn` (which blocks), over at least `repeats` calls and `min_seconds`."""
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
        if len(times) >= 10 * repeats:
            break
    return float(np.median(times))


def bench_config(path: str, batch_size: int, n_critic: int, repeats: int, min_seconds: float, mesh) -> dict:
    config = load_config(path)
    config.train.batch_size = batch_size
    config.train.n_critic = n_critic
    experiment = experiment_lib.build(config)
    config, resolution = experiment.config, experiment.config.model.resolution
    state = jax.jit(experiment.init_state, out_shardings=parallel.replicated(mesh))()
    step = train.jit_train_step(experiment.train_step(mesh), mesh)
    stored_channels = 3 if config.data.quaternion != 'none' else config.model.channels
    host = np.random.default_rng(0).integers(0, 256, (n_critic, batch_size, resolution, resolution,
                                                       stored_channels), dtype=np.uint8)
    batch = parallel.global_batch(host, mesh, batch_axis=1)
    compile_start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - compile_start
    flops = summary.compiled_flops(compiled)
    holder = {'state': state}

    def run():
        holder['state'], metrics = compiled(holder['state'], batch)
        jax.block_until_ready(metrics)

    run()
    seconds = _time(run, repeats, min_seconds)

    # Input pipeline on the embedded sample (host gather + stack + transfer), per iteration.
    sample_config = config.data.copy_and_resolve_references()
    sample_config.source = 'sample:cifar10'
    sample_config.image_size = resolution
    source = data.make_source(sample_config)

    def load():
        arrays = np.stack([source.host_batch(i, batch_size, 0)['image'] for i in range(n_critic)])
        jax.block_until_ready(parallel.global_batch(arrays, mesh, batch_axis=1))

    input_seconds = _time(load, repeats, min(min_seconds, 1.0))

    # The alternative: the whole sample resident on the device, the batch gathered there by a jitted take.
    resident = jax.device_put(source.images, parallel.replicated(mesh))
    gather = jax.jit(lambda images, index: jnp.take(images, index, axis=0),
                     out_shardings=parallel.batch_sharding(mesh, 1))
    index = jnp.asarray(np.random.default_rng(1).integers(0, len(source.images), (n_critic, batch_size)))
    jax.block_until_ready(gather(resident, index))
    resident_seconds = _time(lambda: jax.block_until_ready(gather(resident, index)), repeats,
                             min(min_seconds, 1.0))
    return {
        'config': path, 'algebra': config.model.algebra, 'model': config.model.name, 'resolution': resolution,
        'batch': batch_size, 'n_critic': n_critic, 'ms_per_iter': 1e3 * seconds,
        'steps_per_sec': 1.0 / seconds, 'images_per_sec': batch_size * n_critic / seconds,
        'flops_per_iter': flops, 'achieved_tflops': flops / seconds / 1e12, 'compile_s': compile_seconds,
        'input_ms': 1e3 * input_seconds, 'resident_input_ms': 1e3 * resident_seconds,
        'hours_per_1m_iters': seconds * 1e6 / 3600.0, 'precision': precision_of(config),
        'peak_memory_bytes': peak_memory_bytes(),
    }


def _is_out_of_memory(error: Exception) -> bool:
    text = str(error)
    return 'RESOURCE_EXHAUSTED' in text or 'Out of memory' in text or 'out of memory' in text


def largest_batch(path: str, start: int, limit: int, n_critic: int, repeats: int, min_seconds: float,
                  mesh) -> dict:
    """Times batches start, 2*start, ... up to `limit`; returns the largest that ran (with `hit_oom`)."""
    if limit < start:
        raise ValueError(f'--largest_batch={limit} is below the starting batch {start}')
    best, batch = None, start
    while batch <= limit:
        try:
            result = bench_config(path, batch, n_critic, repeats, min_seconds, mesh)
        except jax.errors.JaxRuntimeError as error:
            if not _is_out_of_memory(error):
                raise
            if best is None:
                raise RuntimeError(f'{path}: batch {batch} does not fit in device memory') from error
            return {**best, 'hit_oom': True}
        best, batch = result, 2 * batch
    return {**best, 'hit_oom': False}


def bench_sampling(path: str, batch_size: int, repeats: int, min_seconds: float, mesh) -> dict:
    experiment = experiment_lib.build(load_config(path))
    config, generator = experiment.config, experiment.generator
    variables = jax.jit(lambda: generator.init({'params': jax.random.PRNGKey(0)},
                                               jnp.zeros((1, config.model.z_dim)), train=False))()
    params = variables['params']
    g_state = {k: v for k, v in variables.items() if k != 'params'}
    generate = train.make_generate(generator, mesh, matmul_precision=config.model.matmul_precision)
    z = parallel.global_batch(np.random.default_rng(0).standard_normal((batch_size, config.model.z_dim))
                              .astype(np.float32), mesh)
    params, g_state = parallel.replicate((params, g_state), mesh)
    jax.block_until_ready(generate(params, g_state, z))
    seconds = _time(lambda: jax.block_until_ready(generate(params, g_state, z)), repeats, min_seconds)
    return {'config': path, 'algebra': config.model.algebra, 'sample_batch': batch_size,
            'precision': precision_of(config),
            'sample_ms': 1e3 * seconds, 'sample_images_per_sec': batch_size / seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', default=DEFAULT_CONFIGS, help='comma-separated config files (pairs: '
                        'quaternion first, real second)')
    parser.add_argument('--batch', default='64', help='comma-separated global batch sizes')
    parser.add_argument('--n_critic', type=int, default=1, help='discriminator updates per iteration')
    parser.add_argument('--repeats', type=int, default=5, help='timed iterations (at least)')
    parser.add_argument('--min_seconds', type=float, default=2.0, help='minimum timing window per measurement')
    parser.add_argument('--sample_batch', type=int, default=0, help='also time eval-mode sampling at this batch')
    parser.add_argument('--largest_batch', type=int, default=0,
                        help='also find the largest batch that fits: double the last --batch until the device runs '
                             'out of memory or this limit is reached, and time that batch')
    parser.add_argument('--json', default='', help='also write the results to this JSON file')
    args = parser.parse_args(argv)

    mesh = parallel.make_mesh()
    device = jax.devices()[0]
    print(f'# {jax.device_count()} x {device.device_kind} ({device.platform}), jax {jax.__version__}')
    paths = [p for p in args.configs.split(',') if p]
    results = []

    def save(row: dict) -> None:  # After every row, so that a timed-out process keeps what it measured.
        results.append(row)
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + '\n')
    header = (f'{"config":34s} {"batch":>5s} {"ms/iter":>9s} {"steps/s":>8s} {"img/s":>9s} {"GFLOP/it":>9s} '
              f'{"TFLOP/s":>8s} {"input ms":>8s} {"resident":>8s} {"compile s":>9s} {"1M it, h":>8s}')
    print(header)
    for batch in [int(b) for b in args.batch.split(',')]:
        row = []
        for path in paths:
            r = bench_config(path, batch, args.n_critic, args.repeats, args.min_seconds, mesh)
            row.append(r)
            save(r)
            print(f'{path:34s} {batch:5d} {r["ms_per_iter"]:9.2f} {r["steps_per_sec"]:8.2f} '
                  f'{r["images_per_sec"]:9.1f} {r["flops_per_iter"] / 1e9:9.2f} {r["achieved_tflops"]:8.3f} '
                  f'{r["input_ms"]:8.2f} {r["resident_input_ms"]:8.2f} {r["compile_s"]:9.1f} '
                  f'{r["hours_per_1m_iters"]:8.1f}', flush=True)
        for first, second in zip(row[::2], row[1::2]):
            ratio = first['ms_per_iter'] / second['ms_per_iter']
            flop_ratio = first['flops_per_iter'] / second['flops_per_iter']
            print(f'  ratio {pathlib.Path(first["config"]).stem} / {pathlib.Path(second["config"]).stem} at batch '
                  f'{batch}: time {ratio:.3f}x, XLA FLOPs {flop_ratio:.3f}x')
    if args.largest_batch:
        start = int(args.batch.split(',')[-1])
        for path in paths:
            r = largest_batch(path, start, args.largest_batch, args.n_critic, args.repeats, args.min_seconds, mesh)
            save(r)
            limit = 'out of memory above it' if r['hit_oom'] else f'limit {args.largest_batch} reached'
            print(f'largest batch {path}: {r["batch"]} ({limit}): {r["ms_per_iter"]:.2f} ms/iter, '
                  f'{r["images_per_sec"]:.0f} images/s, {r["achieved_tflops"]:.3f} TFLOP/s', flush=True)
    if args.sample_batch:
        for path in paths:
            r = bench_sampling(path, args.sample_batch, args.repeats, args.min_seconds, mesh)
            save(r)
            print(f'sampling {path}: batch {args.sample_batch}: {r["sample_ms"]:.2f} ms, '
                  f'{r["sample_images_per_sec"]:.0f} images/s', flush=True)
    return 0 if all(math.isfinite(r.get('ms_per_iter', r.get('sample_ms', 0.0))) for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
