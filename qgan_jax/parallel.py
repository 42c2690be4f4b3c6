"""Data parallelism: multi-process start-up, the device mesh and the shardings of state and batches.

One code path for 1 CPU, 8 GPUs or a multi-host TPU slice: a 1-D `jax.sharding.Mesh` over every device of every
process with the axis `data`; batches are sharded on that axis, parameters and optimiser state replicated, and XLA
inserts the gradient all-reduce (and the cross-device batch-norm statistics) itself.

Multi-process runs: `initialize_distributed()` calls `jax.distributed.initialize()` when the environment asks for
it (`JAX_COORDINATOR_ADDRESS` [+ `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`] set explicitly, or `QGAN_DISTRIBUTED=1`
for JAX's cluster auto-detection on Cloud TPU pod slices, SLURM and Open MPI). Each process then loads only its
rows of every global batch and `global_batch` assembles them into one global array.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def initialize_distributed() -> bool:
    """Starts JAX's multi-process runtime when the environment asks for it; returns whether it did.

    Must run before anything touches a JAX backend. A single process without those variables is left alone.
    """
    address = os.environ.get('JAX_COORDINATOR_ADDRESS')
    auto = os.environ.get('QGAN_DISTRIBUTED', '') not in ('', '0')
    if not address and not auto:
        return False
    if jax.distributed.is_initialized():
        return True
    kwargs: dict[str, Any] = {}
    if address:
        kwargs['coordinator_address'] = address
        for env, name in (('JAX_NUM_PROCESSES', 'num_processes'), ('JAX_PROCESS_ID', 'process_id')):
            if os.environ.get(env):
                try:
                    kwargs[name] = int(os.environ[env])
                except ValueError as error:
                    raise ValueError(f'{env}={os.environ[env]!r} must be an integer') from error
    jax.distributed.initialize(**kwargs)
    return True


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis `data` over `devices` (default: every device of every process).

    Devices are ordered by (process, id) so that each process's devices hold one contiguous block of the batch,
    the block `data.Source.host_batch` loads on that process.
    """
    devices = list(jax.devices() if devices is None else devices)
    devices.sort(key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters, optimiser state and scalars: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Sharding of an array whose axis `batch_axis` is the (global) batch: split over the `data` axis."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises a ValueError unless `train.batch_size` splits evenly over the mesh's devices and the processes."""
    devices, processes = mesh.devices.size, jax.process_count()
    if batch_size <= 0 or batch_size % devices or batch_size % processes:
        raise ValueError(f'train.batch_size={batch_size} must be a positive multiple of the device count '
                         f'{devices} (and of the process count {processes})')


def global_batch(local_data: np.ndarray, mesh: Mesh, batch_axis: int = 0) -> jax.Array:
    """Assembles each process's rows (`local_data`, this process's contiguous block of axis `batch_axis`) into one
    global array sharded on `data` over `mesh`; with one process this is a sharded `device_put`."""
    sharding = batch_sharding(mesh, batch_axis)
    global_shape = list(local_data.shape)
    global_shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, local_data, tuple(global_shape))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree of host or single-device arrays on every device of `mesh` (identical on every process)."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)),
                        tree)


def to_host(tree: Any) -> Any:
    """Fetches a pytree of (possibly multi-process, replicated or sharded) arrays to NumPy on this process."""
    for leaf in jax.tree.leaves(tree):  # Start every device-to-host copy before waiting on any.
        if isinstance(leaf, jax.Array) and leaf.is_fully_addressable:
            leaf.copy_to_host_async()

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)
    return jax.tree.map(fetch, tree)
