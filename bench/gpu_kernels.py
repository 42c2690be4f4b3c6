"""Kernels launched by one training iteration on an H100, counted from XLA's program without a GPU.

    pip install "jax[cuda13]==$(python -c 'import jax; print(jax.__version__)')"   # the CUDA plugin; no GPU needed
    python bench/gpu_kernels.py --configs=configs/giu_cifar10.py,configs/giu_baseline_cifar10.py --n_critic=5
    python bench/gpu_kernels.py --target=local --by_module=10      # this machine's backend instead

At batch 64 a GAN iteration on an H100 is bound by how many kernels it launches, not by FLOPs or bytes: GIU-GAN's
measured cycle time tracked its kernel count (see the README's measured results). This script compiles
`train.make_train_step` ahead of time for an H100 (`jax.experimental.topologies`, deviceless) and counts the
kernels of the optimised program: fusions, library calls (cuBLAS / cuDNN / Triton) and copies, looking inside
command-buffer calls, loops and conditionals; `--by_module` lists the modules with most kernels, from the
program's op-name metadata. Ratios follow bench/train_step.py (first config over second, and so on).
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import re
import sys
from typing import Iterator

# The CUDA plugin checks the local CUDA driver when it loads; there is none to check for a deviceless compile.
os.environ.setdefault('JAX_SKIP_CUDA_CONSTRAINTS_CHECK', '1')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / 'bench'))

from qgan_jax import parallel, train  # noqa: E402
from qgan_jax import experiment as experiment_lib  # noqa: E402
from train_step import load_config  # noqa: E402  (bench/train_step.py)

# XLA's description of an H100 SXM (what the CUDA plugin reports on one), for compiling without the device.
H100_TARGET_CONFIG = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000 l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: 84929347584 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 13 minor: 0 patch: 0 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""

# Instructions that launch nothing: they name, bundle or reinterpret buffers.
_NOT_KERNELS = {'parameter', 'get-tuple-element', 'tuple', 'bitcast', 'constant', 'after-all', 'add-dependency',
                'opt-barrier', 'partition-id', 'replica-id'}
# Instructions whose work is in the computations they call.
_CALLERS = {'call', 'while', 'conditional', 'async-start', 'async-update', 'async-done'}
_COMPUTATION = re.compile(r'^(ENTRY )?%(\S+) .*\{$')
_INSTRUCTION = re.compile(r'^(?:ROOT )?%\S+ = .*? ([a-z][a-z\-]*)\(')
_CALLED = re.compile(r'(?:to_apply|body|condition|calls)=%?([\w.\-]+)|branch_computations=\{([^}]*)\}')


def _computations(hlo_text: str) -> tuple[dict[str, list[str]], str]:
    """HLO module text -> ({computation name: instruction lines}, entry computation name)."""
    computations, current, entry = {}, None, None
    for line in hlo_text.splitlines():
        match = _COMPUTATION.match(line)
        if match:
            current = match.group(2)
            computations[current] = []
            entry = current if match.group(1) else entry
        elif line.startswith('}'):
            current = None
        elif current is not None and ' = ' in line:
            computations[current].append(line.strip())
    if entry is None:
        raise ValueError('the HLO text has no ENTRY computation')
    return computations, entry


def kernels(hlo_text: str) -> list[tuple[str, str]]:
    """The kernels an optimised HLO module launches, in program order: (kind, op_name metadata).

    kind: 'fusion' (and its fusion kind, e.g. 'fusion:kLoop'), a custom call's target (library calls such as
    '__cudnn$convForward'), or the opcode ('copy', 'convolution', ...).
    """
    computations, entry = _computations(hlo_text)

    def walk(name: str) -> Iterator[tuple[str, str]]:
        for line in computations.get(name, ()):
            match = _INSTRUCTION.match(line)
            if not match or match.group(1) in _NOT_KERNELS:
                continue
            opcode = match.group(1)
            if opcode in _CALLERS:
                for single, branches in _CALLED.findall(line):
                    for callee in [single] if single else re.findall(r'%?([\w.\-]+)', branches):
                        yield from walk(callee)
                continue
            kind = opcode
            if opcode == 'custom-call':
                target = re.search(r'custom_call_target="([^"]+)"', line)
                kind = target.group(1) if target else opcode
            elif opcode == 'fusion':
                fusion_kind = re.search(r'kind=(k\w+)', line)
                kind = 'fusion:' + ('triton' if '__triton' in line else fusion_kind.group(1) if fusion_kind else '?')
            op_name = re.search(r'op_name="([^"]*)"', line)
            yield kind, op_name.group(1) if op_name else ''

    return list(walk(entry))


def module_of(op_name: str) -> str:
    """'jit(step)/transpose(jvp(Discriminator))/giu3/se/fc1/layer/dot_general' -> 'Discriminator/giu3/se/fc1'."""
    parts = op_name.split('/')
    network = next((re.sub(r'.*\((\w+)\)+$', r'\1', p) for p in parts if 'Generator' in p or 'Discriminator' in p),
                   None)
    if network is None:
        return '(step)'
    start = next(i for i, p in enumerate(parts) if network in p) + 1
    path = [p for p in parts[start:-1] if re.fullmatch(r'[a-z_]+\d*', p) and p != 'layer']
    return '/'.join([network] + path[:3])


def h100_mesh() -> jax.sharding.Mesh:
    """A one-device mesh on an H100 described by `H100_TARGET_CONFIG` (needs the CUDA plugin, not a GPU)."""
    from jax.experimental import topologies
    try:
        topology = topologies.get_topology_desc(platform='cuda', target_config=H100_TARGET_CONFIG,
                                                topology='1x1x1')
    except Exception as error:  # The plugin is missing or too old: say what to install.
        raise SystemExit(f'Compiling for an H100 needs the JAX CUDA plugin: pip install "jax[cuda13]=='
                         f'{jax.__version__}" (or run with --target=local). ({type(error).__name__}: {error})')
    return topologies.make_mesh(topology, (1,), (parallel.DATA_AXIS,))


def compiled_iteration(path: str, batch_size: int, n_critic: int, mesh: jax.sharding.Mesh):
    """`jit_train_step` of a config, compiled from abstract state and batch for `mesh` (nothing is allocated)."""
    config = load_config(path)
    config.train.batch_size, config.train.n_critic = batch_size, n_critic
    experiment = experiment_lib.build(config)
    config, resolution = experiment.config, experiment.config.model.resolution
    state = experiment.abstract_state(parallel.replicated(mesh))
    stored_channels = 3 if config.data.quaternion != 'none' else config.model.channels
    batch = jax.ShapeDtypeStruct((n_critic, batch_size, resolution, resolution, stored_channels), jnp.uint8,
                                 sharding=parallel.batch_sharding(mesh, 1))
    return train.jit_train_step(experiment.train_step(mesh), mesh).lower(state, batch).compile()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--configs', default='configs/giu_cifar10.py,configs/giu_baseline_cifar10.py')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--n_critic', type=int, default=5)
    parser.add_argument('--target', choices=('h100', 'local'), default='h100')
    parser.add_argument('--by_module', type=int, default=0, help='list the N modules with most kernels')
    args = parser.parse_args(argv)
    if args.target == 'h100':
        jax.config.update('jax_platforms', 'cpu')  # The default backend; the H100 exists only as a target.
        mesh = h100_mesh()
    else:
        mesh = parallel.make_mesh()
    print(f'target: {mesh.devices.flat[0].device_kind}; batch {args.batch}, n_critic {args.n_critic}')
    counts = []
    for path in args.configs.split(','):
        launched = kernels(compiled_iteration(path, args.batch, args.n_critic, mesh).as_text())
        kinds = collections.Counter(kind for kind, _ in launched)
        counts.append(len(launched))
        print(f'{path}: {len(launched)} kernels  ' + ', '.join(f'{k} {n}' for k, n in kinds.most_common(6)))
        if args.by_module:
            modules = collections.Counter(module_of(name) for _, name in launched)
            for module, n in modules.most_common(args.by_module):
                print(f'    {n:6d}  {module}')
    for first, second, a, b in zip(counts[::2], counts[1::2], args.configs.split(',')[::2],
                                   args.configs.split(',')[1::2]):
        print(f'{pathlib.Path(a).stem} / {pathlib.Path(b).stem}: {first / second:.2f}x kernels')
    return 0


if __name__ == '__main__':
    sys.exit(main())
