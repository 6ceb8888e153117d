"""What a decode call holds in device memory: the unrolled layout's per-layer weight copy (made, or as shapes
for a compile ahead), whether the device has room for it, and how many plans of a grid one decode loop takes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsteer import ahead
from jaxsteer.model.family import family_of
from jaxsteer.model.model import Model

_decided: dict[tuple, tuple[bool, int | None]] = {}


def decided_layout(
    model: Model, rows: int, total: int, count: int | None, decode_layout: str
) -> tuple[bool, int | None]:
    """Whether a decode call of ``rows`` prompts × ``total`` positions (and ``count`` plans) runs unrolled, and
    how many plans each of its loops takes — read from the device's free memory once per model and shape in
    this process, then kept: a compile ahead and its call must agree (they are made seconds apart, while a
    background compile's autotuning may hold scratch memory), and calls of one experiment stay one shape."""
    key = (id(model.params), model.config.config_hash(), str(model.dtype), rows, total, count, decode_layout)
    if key not in _decided:
        unroll = decode_layout == "unrolled" or (decode_layout == "auto" and room_for_layer_copy(model.params))
        chunk = None if count is None else plans_per_call(model, rows, total, count, unroll)
        _decided[key] = (unroll, chunk)
    return _decided[key]


def plans_per_call(model: Model, rows: int, total: int, count: int, unrolled: bool, share: float = 0.5) -> int:
    """How many of ``count`` plans one decode loop takes (all unless their KV cache — ``rows`` prompts per plan,
    ``total`` positions — would outgrow ``share`` of what the device has left after the weights and, for the
    unrolled layout, their per-layer copy). Devices that do not report memory (the CPU) take all. In a
    multi-process job, the fewest any process can take. Calls are balanced: 18 plans with room for 17 go in two
    calls of 9, not 17 + 1 padded to 17 (which would decode 34 plans, and break the two halves' shared tree)."""
    from jaxsteer.devices import least_over_processes

    fit = least_over_processes(_plans_fitting(model, rows, total, count, unrolled, share))
    calls = -(-count // fit)
    return -(-count // calls)


def _plans_fitting(model: Model, rows: int, total: int, count: int, unrolled: bool, share: float) -> int:
    from jaxsteer.devices import bytes_per_device, free_bytes

    held = bytes_per_device(model.params["layers"])
    if not held:
        return count
    device, layers = next(iter(held.items()))
    free = free_bytes(device)
    if free is None:
        return count
    c = model.config
    itemsize = jnp.dtype(model.dtype).itemsize
    shards = max(1, len(held))  # rows and heads are split over the mesh's devices
    per_plan = rows * total * c.num_layers * c.num_kv_heads * c.head_dim * 2 * itemsize / shards
    room = share * (free - (layers if unrolled else 0))
    return int(max(1, min(count, room // max(per_plan, 1))))


def split_layers(layers, config, fuse: bool) -> tuple:
    """One weight pytree per layer; with ``fuse``, in the family's fused form (q/k/v and gate/up stacked: a
    memory-bound step reads two wide matrices instead of five narrow ones; the copy is made anyway).

    One compiled program copies any layer (its index is an argument), called once a layer: a single program
    slicing all ``L`` layers compiled for seconds at 12B (2.7 s on a CPU, ``bench/compile_cost.py``) — time a
    first run pays before its first token."""
    return tuple(layer_copy(layers, np.int32(i), config=config, fuse=fuse) for i in range(config.num_layers))


@functools.partial(jax.jit, static_argnames=("config", "fuse"))
def layer_copy(layers, index, config, fuse: bool):
    layer = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, index, keepdims=False), layers)
    return family_of(config).fuse_layer(layer) if fuse else layer


def split_shapes(layers, config, fuse: bool) -> tuple:
    """What :func:`split_layers` returns, as shapes (nothing copied; the copy program compiled): for compiles
    ahead."""
    shapes = ahead.output_shapes(layer_copy, layers, np.int32(0), config=config, fuse=fuse)  # a mesh: compiles it
    ahead.in_background(layer_copy, layers, np.int32(0), config=config, fuse=fuse)
    return (shapes,) * config.num_layers


def fusable(model: Model) -> bool:
    """Fused projections unless a model axis splits each projection's rows on its own (tensor parallel)."""
    return model.mesh is None or dict(model.mesh.shape).get("model", 1) == 1


def room_for_layer_copy(params) -> bool:
    """True when every device can hold a second copy of its share of the layer weights (unknown: True)."""
    from jaxsteer.devices import room_for_copy

    return room_for_copy(params["layers"])
