"""Data parallelism on fake CPU devices: 8 devices == 1 device; two processes (jax.distributed) agree.

Each case runs in a fresh Python with `XLA_FLAGS=--xla_force_host_platform_device_count=N`, so the device count of
the test process (and of every other test) is untouched.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from qgan_jax import parallel

ROOT = pathlib.Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, sys
import jax
import numpy as np
jax.config.update('jax_disable_most_optimizations', True)
from tests.fixtures import tiny_config
from qgan_jax import data, experiment, parallel, train
"""

_ONE_VS_EIGHT = _PRELUDE + """
config = tiny_config()
config.train.n_critic = 1
built = experiment.build(config)
config = built.config
source = data.make_source(config.data)

def run(devices):
    mesh = parallel.make_mesh(devices)
    state = jax.jit(built.init_state, out_shardings=parallel.replicated(mesh))()
    step = train.jit_train_step(built.train_step(mesh), mesh)
    for i in range(2):
        state, metrics = step(state, parallel.global_batch(train._host_batch(source, i, config), mesh, 1))
    batch_devices = len(parallel.global_batch(train._host_batch(source, 0, config), mesh, 1).sharding.device_set)
    return jax.tree.leaves(parallel.to_host(state)), parallel.to_host(metrics), batch_devices

one, one_metrics, one_devices = run(jax.devices()[:1])
eight, eight_metrics, eight_devices = run(jax.devices())
# Differences relative to each value's magnitude (floored at 1e-2: parameters are ~N(0, 0.02^2) at init).
diffs = [float(np.max(np.abs(a.astype(np.float64) - b) / (np.abs(a) + 1e-2))) if a.size else 0.0
         for a, b in zip(one, eight)]
print(json.dumps({'devices': [one_devices, eight_devices], 'max_rel_diff': max(diffs),
                  'leaves': len(one), 'same_shapes': [a.shape for a in one] == [b.shape for b in eight],
                  'metrics': [{k: float(v) for k, v in one_metrics.items()},
                              {k: float(v) for k, v in eight_metrics.items()}]}))
"""

_WORKER = _PRELUDE + """
assert parallel.initialize_distributed()
workdir = sys.argv[1]
config = tiny_config(num_steps=3)
config.checkpoint.every_steps = 0
state = train.train_and_evaluate(config, workdir)
leaves = jax.tree.leaves(parallel.to_host(state))
np.savez(f'{workdir}/state_{jax.process_index()}.npz', *leaves)
print(json.dumps({'process': jax.process_index(), 'processes': jax.process_count(),
                  'devices': jax.device_count(), 'local_devices': jax.local_device_count()}))
"""


def _env(device_count: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={device_count}'.strip()
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env.pop('JAX_PLATFORMS', None)
    env.update(extra)
    return env


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith('{')][-1])


def test_eight_devices_match_one_device_with_the_same_global_batch():
    result = subprocess.run([sys.executable, '-c', _ONE_VS_EIGHT], cwd=ROOT, env=_env(8), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = _last_json(result.stdout)
    assert report['devices'] == [1, 8]  # The batch really was split over 8 devices.
    assert report['same_shapes'] and report['leaves'] > 10
    assert report['max_rel_diff'] < 1e-3, report
    one, eight = report['metrics']
    for name in ('d_loss', 'g_loss', 'd_real', 'd_fake'):
        np.testing.assert_allclose(one[name], eight[name], rtol=1e-3, atol=1e-4)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_jax_distributed_train_and_agree(tmp_path):
    address = f'127.0.0.1:{_free_port()}'
    workers = [subprocess.Popen([sys.executable, '-c', _WORKER, str(tmp_path)], cwd=ROOT,
                                env=_env(2, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES='2',
                                         JAX_PROCESS_ID=str(i)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=600))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-4000:]
    reports = [_last_json(stdout) for stdout, _ in outputs]
    assert sorted(r['process'] for r in reports) == [0, 1]
    assert all(r['processes'] == 2 and r['devices'] == 4 and r['local_devices'] == 2 for r in reports)
    with np.load(tmp_path / 'state_0.npz') as first, np.load(tmp_path / 'state_1.npz') as second:
        assert len(first.files) > 10
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name])
    steps = [json.loads(line)['step'] for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
    assert steps == [1, 2, 3]  # Written once, by process 0.
    assert (tmp_path / 'checkpoints' / '3').is_dir()


def test_mesh_orders_devices_by_process_and_checks_the_batch():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == (parallel.DATA_AXIS,)
    with pytest.raises(ValueError, match=r'train\.batch_size=0 must be a positive multiple of the device count'):
        parallel.check_batch_size(0, mesh)
    array = parallel.global_batch(np.arange(12, dtype=np.float32).reshape(2, 6), mesh, batch_axis=1)
    assert array.shape == (2, 6) and array.sharding.spec == parallel.batch_sharding(mesh, 1).spec
    np.testing.assert_array_equal(parallel.to_host(array), np.arange(12).reshape(2, 6))


def test_initialize_distributed_is_a_no_op_without_the_environment(monkeypatch):
    for name in ('JAX_COORDINATOR_ADDRESS', 'QGAN_DISTRIBUTED'):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize_distributed() is False


def test_worker_scripts_are_valid_python():
    for source in (_ONE_VS_EIGHT, _WORKER):
        compile(textwrap.dedent(source), '<worker>', 'exec')
