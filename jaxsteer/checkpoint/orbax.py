"""Training checkpoints with Orbax: train state, data position and config, every N steps, the last k kept.

A checkpoint is one Orbax step folder with three items: ``state`` (a pytree of arrays — the trainer puts
its step counter, trainable parameters and optimizer state there), ``data`` (the pipeline position, JSON)
and ``config`` (the run config and its hash, JSON). Orbax writes each step to a temporary folder and
renames it when complete, so a run killed mid-save leaves the previous checkpoints intact and
:meth:`TrainCheckpointer.latest_step` never returns a half-written one. Saves are asynchronous where
the backend allows: the arrays are copied off the devices and training continues while they are written.

Restoring takes an *abstract* target (``jax.ShapeDtypeStruct`` with shardings), so arrays are read
straight into their shards on the current mesh, whatever mesh wrote them.

``save_params``/``restore_params`` store a bare params pytree (e.g. trained LoRA factors) the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxsteer.errors import CheckpointError


class TrainCheckpointer:
    """An Orbax ``CheckpointManager`` for one training run folder."""

    def __init__(self, directory: str | os.PathLike, *, every: int = 100, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.every = int(every)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep),
            save_interval_steps=1,  # the trainer decides when (every N steps and at the end)
            enable_async_checkpointing=bool(async_save),
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data", "config"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def due(self, step: int, last: bool = False) -> bool:
        return last or step % self.every == 0

    def save(self, step: int, state: Any, *, data: dict, config: dict) -> bool:
        """Start saving ``state`` at ``step`` (returns at once when async); False if that step exists."""
        if step in self.manager.all_steps():
            return False
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data),
            config=ocp.args.JsonSave(config),
        )
        return bool(self.manager.save(step, args=args, force=True))

    def read_meta(self, step: int | None = None) -> tuple[int, dict, dict]:
        """(step, data position, config) of a checkpoint without reading its arrays."""
        step = self._step(step)
        try:
            out = self.manager.restore(
                step, args=ocp.args.Composite(data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore())
            )
            return step, dict(out["data"]), dict(out["config"])
        except (OSError, ValueError, KeyError, TypeError) as e:  # a cut-short save, edited or foreign files
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"cannot read checkpoint step {step} in {self.directory}: {first}") from None

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[int, Any, dict, dict]:
        """(step, state, data position, config), arrays placed by the shardings of ``abstract_state``."""
        step = self._step(step)
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore(),
                    config=ocp.args.JsonRestore(),
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} does not match this run: {first}"
            ) from None
        return step, out["state"], dict(out["data"]), dict(out["config"])

    def _step(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None or step not in self.manager.all_steps():
            raise CheckpointError(f"no checkpoint{'' if step is None else f' at step {step}'} in {self.directory}")
        return int(step)

    def wait(self) -> None:
        """Block until the pending async save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """``ShapeDtypeStruct`` leaves (with shardings, when given) for a restore target."""
    if shardings is None:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
        )
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def save_params(path: str | os.PathLike, params: Any, overwrite: bool = False) -> str:
    """Write a params pytree to an Orbax folder (atomically: temporary folder, then rename)."""
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} already exists (pass overwrite=True to replace it)")
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, params, force=overwrite)
        ckpt.wait_until_finished()
    return str(path)


def restore_params(path: str | os.PathLike, target: Any = None) -> Any:
    """Read a params pytree; ``target`` (arrays or ``ShapeDtypeStruct``s) fixes dtypes and shardings."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise CheckpointError(f"no params checkpoint at {path}")
    with ocp.StandardCheckpointer() as ckpt:
        try:
            if target is None:
                return ckpt.restore(path)
            return ckpt.restore(path, abstract_like(target) if not _is_abstract(target) else target)
        except (OSError, ValueError, KeyError, TypeError) as e:  # empty, truncated, or another tree's shapes
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"cannot restore params from {path}: {first}") from None


def _is_abstract(tree: Any) -> bool:
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
