"""Compiles every config's training step for Cloud TPU slices ahead of time, on a machine without a TPU.

    pip install --no-deps --target /tmp/libtpu "libtpu==0.0.42.*"     # the libtpu of jax[tpu] at jax 0.10.x
    PYTHONPATH=/tmp/libtpu python bench/tpu_compile.py [--slices=v5e:2x2,v5e:2x4,v4:2x2x2,v6e:4x4] \
        [--configs=A,B] [--json=out.json]

For each slice, `jax.experimental.topologies` gives its devices (all hosts' chips) and the trainer's own step
(`train.jit_train_step` over `parallel.make_mesh(devices)`: replicated, donated state; batch sharded on `data`) is
lowered on abstract inputs and compiled for that TPU. Reports per chip: XLA's memory analysis (arguments, outputs,
temporaries, generated code) against the chip's HBM, XLA's FLOPs and its time estimate per iteration
(`optimal_seconds`, an estimate, not a measurement; n/a where XLA gives none), and whether the paper batch fits. A failure to compile or to
fit is printed as a finding, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')  # No TPU VM metadata here: one local worker.

import jax  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / 'bench'))
from qgan_jax import parallel, train  # noqa: E402
from qgan_jax import experiment as experiment_lib  # noqa: E402
from train_step import load_config  # noqa: E402  (bench/train_step.py)

HBM_GIB = {'v4': 32, 'v5e': 16, 'v5p': 95, 'v6e': 32}
DEFAULT_SLICES = 'v5e:2x2,v5e:2x4,v4:2x2x2,v6e:4x4'
DEFAULT_CONFIGS = ','.join(f'configs/{name}.py' for name in (
    'qsngan_cifar10', 'sngan_cifar10', 'phc_sngan_cifar10', 'qsngan_celebahq128', 'sngan_celebahq128',
    'qdcgan_celeba64', 'dcgan_celeba64', 'giu_cifar10', 'giu_baseline_cifar10', 'factorised_cifar10',
    'gansformer_cifar10', 'gansformer_ffhq'))


def load(spec: str) -> experiment_lib.Experiment:
    """The experiment of `path[:field=value ...]` (bench/train_step.py's spec syntax)."""
    return experiment_lib.build(load_config(spec))


def compile_step(experiment: experiment_lib.Experiment, devices) -> dict:
    """Compiles the experiment's training step for `devices`; returns memory, FLOPs and XLA's time estimate."""
    mesh = parallel.make_mesh(devices)
    config, resolution = experiment.config, experiment.config.model.resolution
    state = experiment.abstract_state(parallel.replicated(mesh))
    stored = 3 if config.data.quaternion != 'none' else config.model.channels
    batch = jax.ShapeDtypeStruct((config.train.n_critic, config.train.batch_size, resolution, resolution, stored),
                                 jax.numpy.uint8, sharding=parallel.batch_sharding(mesh, 1))
    step = train.jit_train_step(experiment.train_step(mesh), mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    memory = compiled.memory_analysis()
    per_chip = sum(getattr(memory, name, 0) for name in (
        'argument_size_in_bytes', 'output_size_in_bytes', 'temp_size_in_bytes',
        'generated_code_size_in_bytes')) - getattr(memory, 'alias_size_in_bytes', 0)
    return {'compile_s': seconds, 'flops': float(cost.get('flops', 0.0)),
            'optimal_seconds': float(cost.get('optimal_seconds', 0.0)),
            'bytes_per_chip': int(per_chip), 'temp_bytes': int(getattr(memory, 'temp_size_in_bytes', 0))}


def report(rows: list[dict]) -> str:
    """Markdown table of compile rows: slice, config, batch, GiB per chip against HBM, fits, GFLOP, compile s."""
    lines = ['| slice (chips, hosts) | config | batch | GiB / chip (HBM) | fits | GFLOP / iteration | compile s |',
             '|---|---|---:|---:|---|---:|---:|']
    for row in rows:
        where = f'{row["slice"]} ({row["chips"]}, {row["hosts"]})'
        config = pathlib.Path(row['config'].split(':')[0]).stem
        if 'error' in row:
            lines.append(f'| {where} | {config} | {row["batch"]} | — | **failed**: {row["error"][:80]} | — | — |')
            continue
        batch = f'{row["batch"]}*' if 'paper_batch' in row else str(row['batch'])
        lines.append(f'| {where} | {config} | {batch} | {row["bytes_per_chip"] / 2 ** 30:.3f} ({row["hbm_gib"]}) | '
                     f'{"yes" if row["fits"] else "**no**"} | {row["flops"] / 1e9:,.1f} | {row["compile_s"]:.0f} |')
    if any('paper_batch' in row for row in rows):
        lines.append('')
        lines.append('\\* the paper batch does not divide the chips (the trainer refuses it in one line); compiled at the '
                     'next multiple.')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--slices', default=DEFAULT_SLICES, help='comma-separated TPU topologies (kind:shape)')
    parser.add_argument('--configs', default=DEFAULT_CONFIGS, help='comma-separated config[:field=value] specs')
    parser.add_argument('--json', default='', help='also write the rows to this file, after every row; rows '
                        'already in it are kept and their (slice, config) skipped, so a long matrix runs in pieces')
    parser.add_argument('--report', default='', help='print the rows of this JSON file as a markdown table and exit '
                        '(no libtpu needed)')
    args = parser.parse_args(argv)
    if args.report:
        print(report(json.loads(pathlib.Path(args.report).read_text())))
        return 0
    try:
        from jax.experimental import topologies
    except ImportError as error:  # pragma: no cover - jax always has it
        parser.error(f'jax.experimental.topologies is unavailable: {error}')
    rows, failures = [], 0
    if args.json and pathlib.Path(args.json).is_file():
        rows = [row for row in json.loads(pathlib.Path(args.json).read_text()) if 'error' not in row]  # Retry those.
        failures = sum(not row['fits'] for row in rows)
    done = {(row['slice'], row['config']) for row in rows}

    def save(row: dict) -> None:
        rows.append(row)
        if args.json:
            pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + '\n')

    print(f'{"slice":10s} {"chips":>5s} {"hosts":>5s} {"config":34s} {"batch":>5s} {"GiB/chip":>8s} {"HBM":>4s} '
          f'{"fits":>4s} {"XLA est. ms":>11s} {"GFLOP":>8s} {"compile s":>9s}', flush=True)
    for name in [s for s in args.slices.split(',') if s]:
        kind = name.split(':')[0]
        if kind not in HBM_GIB:
            parser.error(f'--slices: unknown TPU kind {kind!r} in {name!r}; known: {sorted(HBM_GIB)}')
        try:
            devices = topologies.get_topology_desc(platform='tpu', topology_name=name).devices
        except Exception as error:  # noqa: BLE001 - libtpu missing or topology unknown: one line, then stop.
            print(f'{name}: no TPU topology ({str(error).splitlines()[0][:200]}); is libtpu on PYTHONPATH?')
            return 1
        hosts = len({d.process_index for d in devices})
        for spec in [c for c in args.configs.split(',') if c]:
            if (name, spec) in done:
                continue
            experiment = load(spec)
            config = experiment.config
            row = {'slice': name, 'chips': len(devices), 'hosts': hosts, 'config': spec,
                   'batch': config.train.batch_size, 'n_critic': config.train.n_critic, 'hbm_gib': HBM_GIB[kind]}
            if config.train.batch_size % len(devices):  # The trainer refuses it in one line; compile the next fit.
                batch = -(-config.train.batch_size // len(devices)) * len(devices)
                row.update(paper_batch=config.train.batch_size, batch=batch,
                           note=f'paper batch {config.train.batch_size} is not a multiple of {len(devices)} chips '
                                f'(the trainer says so in one line); compiled at batch {batch}')
                with config.unlocked():
                    config.train.batch_size = batch
            try:
                row.update(compile_step(experiment, devices))
            except Exception as error:  # noqa: BLE001 - a failure to compile is a finding, reported in one line.
                failures += 1
                row['error'] = f'{type(error).__name__}: {str(error).splitlines()[0][:300]}'
                print(f'{name:10s} {len(devices):5d} {hosts:5d} {spec:34s} FAILED {row["error"]}', flush=True)
                save(row)
                continue
            gib = row['bytes_per_chip'] / 2 ** 30
            row['fits'] = gib <= HBM_GIB[kind]
            failures += not row['fits']
            estimate = f'{1e3 * row["optimal_seconds"]:11.3f}' if row['optimal_seconds'] > 0 else f'{"n/a":>11s}'
            print(f'{name:10s} {len(devices):5d} {hosts:5d} {spec:34s} {row["batch"]:5d} {gib:8.3f} '
                  f'{HBM_GIB[kind]:4d} {"yes" if row["fits"] else "NO":>4s} {estimate} '
                  f'{row["flops"] / 1e9:8.2f} {row["compile_s"]:9.1f}', flush=True)
            save(row)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
