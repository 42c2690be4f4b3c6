"""Every accelerator number in one call: the prepared check for a short GPU window.

Runs the benchmark items below in order of value, each in its own process under its own time limit (so a slow
or failing item cannot starve the rest, and peak memory is per item), until the overall budget is spent. Writes
`<out>/device_check.json` ({'meta', 'items', 'rows'}: every row tagged with the item, device, jax / CUDA versions,
precision and batch) and `<out>/log.txt` (the raw output). Copy the JSON to `bench/results/<date>-<device>.json`
and run `python bench/results_table.py` to regenerate the README's accelerator table from bench/results/.

On the GPU machine (device tool; the wheels it lacks travel in the ignored .whl/ folder):

    echo /.whl/ >> .git/info/exclude
    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_17_x86_64 -d .whl ml-collections==1.1.0 clu==0.0.12
    run(command="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target \\
        /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site python3 bench/device_check.py --out=$OUT --budget_s=450",
        carry=[".whl"], timeout_s=540)

    python bench/device_check.py --cpu_smoke --out=/tmp/dc     # the same driver on the CPU with tiny sizes

Status after the 2026-12-04 window (bench/results/2026-12-04-nvidia-h200-check1.json): the next window first runs
what is still unmeasured, in one call (a full item takes 40-120 s on the H200, most of it compiling):

    --only=torch_twin,iteration_qsngan32_bf16,giu_cycle_fused_gp,iteration_qsngan128,iteration_phc4_sngan32,\
iteration_gansformer,fid_features_f32,fid_features_tf32,largest_batch_qsngan32 --budget_s=450
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable

QSNGAN32, SNGAN32 = 'configs/qsngan_cifar10.py', 'configs/sngan_cifar10.py'
BF16 = ':model.dtype=bfloat16'
SMOKE_WIDTHS = {  # Widths small enough for the CPU smoke run, per family.
    'sngan': ':model.g_width=8:model.d_width=8', 'dcgan': ':model.g_width=8:model.d_width=8',
    'giu': ':model.g_width=8:model.d_width=8',
    'gansformer': ':model.gansformer.channel_base=64:model.gansformer.channel_max=8',
}


@dataclasses.dataclass(frozen=True)
class Item:
    """One benchmark process: `argv` after the script, `seconds` its time limit on the accelerator."""
    name: str
    script: str
    argv: tuple[str, ...]
    seconds: float
    configs: tuple[str, ...] = ()   # config specs, passed as --configs (smoke: reduced widths appended)


def train_step(name: str, configs: tuple[str, ...], seconds: float, *extra: str) -> Item:
    return Item(name, 'bench/train_step.py', extra, seconds, configs)


ITEMS = (  # In order of value: the headline pair and its PyTorch twin first.
    train_step('iteration_qsngan32', (QSNGAN32, SNGAN32), 100, '--batch=64', '--sample_batch=1000'),
    Item('torch_twin', 'bench/torch_twin.py', ('--batch=64', '--compile', '--sample_batch=1000'), 150),
    train_step('iteration_qsngan32_bf16', (QSNGAN32 + BF16, SNGAN32 + BF16), 110, '--batch=64'),
    train_step('giu_cycle', ('configs/giu_cifar10.py', 'configs/giu_baseline_cifar10.py'), 120, '--batch=64',
               '--n_critic=5'),
    train_step('giu_cycle_fused_gp', ('configs/giu_cifar10.py:loss.gp_fused=True',), 90, '--batch=64',
               '--n_critic=5'),
    train_step('iteration_qsngan128', ('configs/qsngan_celebahq128.py', 'configs/sngan_celebahq128.py'), 120,
               '--batch=64'),
    train_step('iteration_qdcgan64', ('configs/qdcgan_celeba64.py', 'configs/dcgan_celeba64.py'), 80, '--batch=64'),
    train_step('iteration_phc4_sngan32', ('configs/phc_sngan_cifar10.py',), 60, '--batch=64'),
    train_step('iteration_gansformer', ('configs/gansformer_cifar10.py',
                                        'configs/gansformer_cifar10.py:model.gansformer.attention=False'), 120,
               '--batch=64'),
    Item('fid_features_f32', 'bench/fid.py', ('--random_weights', '--batch=500', '--num_images=10000',
                                              '--precision=highest'), 90),
    Item('fid_features_tf32', 'bench/fid.py', ('--random_weights', '--batch=500', '--num_images=10000',
                                               '--precision=default'), 90),
    train_step('largest_batch_qsngan32', (QSNGAN32,), 150, '--batch=1024', '--largest_batch=65536'),
)


def smoke_argv(item: Item) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(argv, configs) of `item` at CPU-smoke size: batch 2, no timing window, reduced widths."""
    replace = {'--batch=64': '--batch=2', '--batch=1024': '--batch=2', '--sample_batch=1000': '--sample_batch=4',
               '--batch=500': '--batch=2', '--num_images=10000': '--num_images=20', '--largest_batch=65536':
               '--largest_batch=4'}
    argv = tuple(replace.get(a, a) for a in item.argv if a != '--compile')
    if item.script.endswith('train_step.py'):
        argv += ('--min_seconds=0', '--repeats=1')
    elif item.script.endswith('torch_twin.py'):
        argv += ('--min_seconds=0',)
    specs = []
    for spec in item.configs:
        path, *rest = spec.split(':')
        family = next((f for f in SMOKE_WIDTHS if f in pathlib.Path(path).stem), '')
        specs.append(':'.join([path, *rest]) + SMOKE_WIDTHS.get(family, ''))
    return argv, tuple(specs)


def device_meta() -> dict:
    """Device, versions and host of this process's default backend."""
    import jax
    device = jax.devices()[0]
    meta = {'device': device.device_kind, 'platform': device.platform, 'device_count': jax.device_count(),
            'jax': jax.__version__, 'host': platform.node(),
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')}
    version = getattr(device.client, 'platform_version', '')
    if version:
        meta['backend_version'] = str(version)
    try:
        import torch
        meta['torch'] = torch.__version__
        meta['torch_cuda'] = torch.version.cuda
    except ImportError:
        pass
    return meta


def run_item(item: Item, argv: tuple[str, ...], specs: tuple[str, ...], limit: float, out: pathlib.Path,
             log) -> tuple[dict, list[dict]]:
    """Runs one item's process under `limit` seconds; returns (status record, its tagged rows)."""
    result = out / f'{item.name}.json'
    result.unlink(missing_ok=True)
    command = [PY, str(ROOT / item.script), *argv, f'--json={result}']
    if specs:
        command.append('--configs=' + ','.join(specs))
    log.write(f'\n== {item.name} (limit {limit:.0f} s): {" ".join(command)}\n')
    log.flush()
    print(f'== {item.name} (limit {limit:.0f} s)', flush=True)
    start = time.perf_counter()
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    try:
        process = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limit, env=env)
        status = 'ok' if process.returncode == 0 else f'failed (exit {process.returncode})'
    except subprocess.TimeoutExpired:
        status = f'timed out after {limit:.0f} s'
    seconds = time.perf_counter() - start
    rows = json.loads(result.read_text()) if result.is_file() else []
    if status == 'ok' and not rows:
        status = 'failed (no rows)'
    for row in rows:
        row['item'] = item.name
    print(f'   {status} in {seconds:.0f} s, {len(rows)} rows', flush=True)
    return {'item': item.name, 'status': status, 'seconds': round(seconds, 1), 'limit_s': limit}, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=os.environ.get('OUT', 'bench/results/device_check'),
                        help='output folder (default $OUT on the device machine)')
    parser.add_argument('--budget_s', type=float, default=450.0, help='overall time budget in seconds')
    parser.add_argument('--only', default='', help='comma-separated item names (default: all, in order)')
    parser.add_argument('--cpu_smoke', action='store_true', help='tiny sizes on the CPU: checks the driver')
    parser.add_argument('--limits', default='', help='per-item time limits replacing the defaults, '
                        'e.g. torch_twin=80,iteration_qsngan128=120 (for a window with little time left)')
    args = parser.parse_args(argv)
    limits = {}
    for spec in [s for s in args.limits.split(',') if s]:
        name, _, seconds = spec.partition('=')
        try:
            limits[name] = float(seconds)
        except ValueError:
            parser.error(f'--limits: {spec!r} is not name=seconds')
    names = [n for n in args.only.split(',') if n]
    unknown = sorted((set(names) | set(limits)) - {item.name for item in ITEMS})
    if unknown:
        parser.error(f'--only / --limits: unknown items {unknown}; known: {[item.name for item in ITEMS]}')
    items = [item for item in ITEMS if not names or item.name in names]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cpu_smoke:
        os.environ['JAX_PLATFORMS'] = 'cpu'
    meta = {**device_meta(), 'cpu_smoke': args.cpu_smoke, 'budget_s': args.budget_s}
    print(f'# {meta["device"]} ({meta["platform"]}), jax {meta["jax"]}, budget {args.budget_s:.0f} s', flush=True)
    deadline = time.perf_counter() + args.budget_s
    records, rows = [], []
    with open(out / 'log.txt', 'w') as log:
        for item in items:
            left = deadline - time.perf_counter()
            if left < 10:
                records.append({'item': item.name, 'status': 'skipped (budget spent)', 'seconds': 0.0})
                print(f'== {item.name}: skipped (budget spent)', flush=True)
                continue
            item_argv, specs = smoke_argv(item) if args.cpu_smoke else (item.argv, item.configs)
            limit = min(left, 300.0 if args.cpu_smoke else limits.get(item.name, item.seconds))
            record, item_rows = run_item(item, item_argv, specs, limit, out, log)
            records.append(record)
            rows.extend({**meta_tags(meta), **row} for row in item_rows)
    (out / 'device_check.json').write_text(json.dumps({'meta': meta, 'items': records, 'rows': rows}, indent=1)
                                           + '\n')
    print(f'wrote {out / "device_check.json"}: {sum(r["status"] == "ok" for r in records)} of {len(records)} '
          f'items ok', flush=True)
    for record in records:
        print(f'  {record["item"]:26s} {record["status"]} ({record["seconds"]} s)')
    return 0 if all(r['status'] == 'ok' for r in records) else 1


def meta_tags(meta: dict) -> dict:
    return {k: meta[k] for k in ('device', 'platform', 'jax', 'backend_version', 'date') if k in meta}


if __name__ == '__main__':
    sys.exit(main())
