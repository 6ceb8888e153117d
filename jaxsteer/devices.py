"""What the devices report about their memory, asked the same way on GPU and TPU.

Both accelerators answer ``Device.memory_stats()`` with ``bytes_limit`` and ``bytes_in_use``; the CPU
answers ``None`` (its memory is the host's), and a runtime may lack the call or raise. Callers get
``None`` for "unknown" and decide themselves what unknown means.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def platform() -> str:
    """``"cpu"``, ``"gpu"`` or ``"tpu"``: the backend that un-placed arrays and jitted calls use."""
    return jax.default_backend()


def free_bytes(device: Any) -> int | None:
    """Bytes ``device``'s allocator can still hand out, or None where the device does not say."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - NotImplementedError, XlaRuntimeError…: a platform without statistics
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def bytes_per_device(tree: Any) -> dict[Any, int]:
    """Bytes each device holds of ``tree``'s arrays: a sharded array counts its shard on each device, a
    replicated one its full size on each. Host (NumPy) leaves count against the default device, where
    a jitted call would put them."""
    held: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        if sharding is None:
            device = jax.local_devices()[0]
            held[device] = held.get(device, 0) + int(np.asarray(leaf).nbytes)
            continue
        shard = int(np.prod(sharding.shard_shape(leaf.shape), dtype=np.int64)) * leaf.dtype.itemsize
        for device in sharding.addressable_devices:
            held[device] = held.get(device, 0) + shard
    return held


def room_for_copy(tree: Any, margin: float = 1.25) -> bool:
    """True when every device holding part of ``tree`` has room for ``margin`` × a second copy of its
    part; devices that do not report their memory (the CPU) are taken to have room. In a multi-process job
    each process sees only its own devices, so the answer is agreed by all (the same program everywhere)."""
    room = True
    for device, need in bytes_per_device(tree).items():
        free = free_bytes(device)
        if free is not None and free <= margin * need:
            room = False
    return bool(least_over_processes(room))


def least_over_processes(value):
    """The smallest ``value`` of all processes of a multi-process job (``value`` itself in one process).

    A choice made from memory (a decode layout, plans per call) is made by each process from its own
    devices; they must all make the same, or they compile different programs that never meet in their
    collectives."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return type(value)(np.min(multihost_utils.process_allgather(np.asarray(value))))
