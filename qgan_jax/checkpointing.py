"""Checkpoints of the whole training state with Orbax: `<workdir>/checkpoints/<step>/`, keep the last K.

Orbax writes each checkpoint into a temporary directory and renames it to `<step>` only once it is complete, so a
half-written checkpoint (preemption, crash, full disk) never replaces a good one; leftovers of an interrupted save
are removed the next time a manager opens the directory. Saves are asynchronous: the training loop continues while
the previous state is written, and `wait()` blocks until everything is on disk.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINTS_DIR = 'checkpoints'
BEST_DIR = 'checkpoints_best'


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
    """`<workdir>/checkpoints` as an absolute path (Orbax needs one)."""
    return pathlib.Path(workdir).expanduser().absolute() / CHECKPOINTS_DIR


class Checkpointer:
    """Saves / restores a state pytree under `<workdir>/checkpoints/<step>`, keeping the `keep` most recent."""

    def __init__(self, workdir: str | os.PathLike, *, keep: int = 3, asynchronous: bool = True,
                 read_only: bool = False):
        if keep < 1:
            raise ValueError(f'checkpoint.keep={keep} must be >= 1')
        options = ocp.CheckpointManagerOptions(
            # A reader saves and deletes nothing (Orbax would reset these with a warning each).
            max_to_keep=None if read_only else keep,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
            enable_async_checkpointing=asynchronous,
        )
        self.directory = checkpoint_dir(workdir)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Starts saving `state` as checkpoint `step` (asynchronously; a step already saved is skipped)."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores checkpoint `step` (default: the latest) into the structure, dtypes and shardings of
        `abstract_state` (a pytree of `jax.ShapeDtypeStruct` with `sharding`, e.g. from `jax.eval_shape`)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f'no checkpoint under {str(self.directory)!r}')
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def reached_preemption(self, step: int) -> bool:
        """True on every process once JAX's preemption notice (multi-process runs) has reached `step`."""
        return jax.process_count() > 1 and self.manager.reached_preemption(step)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class BestCheckpointer:
    """Keeps the one checkpoint with the best value of an evaluation metric, under `<workdir>/checkpoints_best/<step>`
    beside the latest ones (same layout, so `Checkpointer(workdir / ..., read_only=True)`-style restores work).

    Every evaluation is saved with its metric; Orbax then removes all but the best (`best_fn`, `best_mode`), across
    resumes too. Saves are synchronous (rare: one per evaluation).
    """

    def __init__(self, workdir: str | os.PathLike, metric: str, mode: str):
        if mode not in ('min', 'max'):
            raise ValueError(f'mode={mode!r} must be min or max')
        self.metric, self.mode = metric, mode
        self.directory = pathlib.Path(workdir).expanduser().absolute() / BEST_DIR
        options = ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda metrics: float(metrics[metric]),
                                               best_mode=mode, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, value: float) -> bool:
        """Saves `state` with its metric `value`; Orbax then keeps only the best. Returns whether `step` is it."""
        if step not in self.manager.all_steps():
            self.manager.save(step, args=ocp.args.StandardSave(state), metrics={self.metric: float(value)},
                              force=True)
        return self.manager.best_step() == step

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
