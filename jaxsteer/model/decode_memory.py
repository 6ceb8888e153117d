"""What a decode call holds in device memory: the unrolled layout's per-layer weight copy (made, or as shapes
for a compile ahead), whether the device has room for it, how many plans of a grid one decode loop takes, and
the ``"moved"`` layout's weights split into per-layer arrays for the call instead of copied."""

from __future__ import annotations

import contextlib
import functools
import sys

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
        unroll = decode_layout in ("unrolled", "moved") or (
            decode_layout == "auto" and room_for_layer_copy(model.params)
        )
        if decode_layout == "auto" and not unroll:
            _hint_moved()
        copy = unroll and decode_layout != "moved"  # moved weights take no room beside the stack
        chunk = None if count is None else plans_per_call(model, rows, total, count, copy)
        _decided[key] = (unroll, chunk)
    return _decided[key]


_hinted: list[bool] = []


def _hint_moved() -> None:
    """Once a process: ``"auto"`` fell back to the scan for lack of room for the copy — say what is faster."""
    if not _hinted:
        _hinted.append(True)
        print(
            "jaxsteer: no room on the device for the per-layer weight copy, so generation decodes with the scan "
            "layout (≈ 2.7× slower a step, bench/RESULTS.md); decode_layout='moved' (config key decode_layout, "
            "--decode-layout moved) decodes at the copy's speed without a copy",
            file=sys.stderr,
        )


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


@contextlib.contextmanager
def moved_layers(model: Model):
    """For the ``with`` block, the model's layer weights as a tuple of per-layer pytrees — the unrolled decode
    step's weights without a copy: each stacked leaf is cut into its ``L`` layers and then freed, so the device
    holds the weights plus one leaf's worth at most (27B: 54.9 + 14.3 GB; the copy needs 2 × 54.9). Stacked again
    the same way when the block ends, also when it raises (same values, same placement), into
    ``model.params["layers"]`` (the same dict).

    While the block runs, ``model.params["layers"]`` holds the freed stacked arrays: they still have shapes, so
    a compile started ahead in another thread builds the right program, but nothing can read them. Arrays taken
    from ``model.params["layers"]`` before the block stay freed after it: read ``model.params`` again. A Ctrl-C
    during the cut or the restack is held until it is done (:func:`jaxsteer.interrupt.deferred`)."""
    from jaxsteer.errors import InputError
    from jaxsteer.interrupt import deferred

    if model.source == "nnx":  # the nnx module (jaxsteer.model.nnx_module) holds these arrays too
        raise InputError("decode_layout='moved' frees the stacked weights, which the nnx module holds as well; "
                         "use 'unrolled' or 'scan' for a model made by Gemma3.to_model")  # fmt: skip
    params = model.params
    leaves, treedef = jax.tree.flatten(params["layers"])
    if not all(isinstance(leaf, jax.Array) for leaf in leaves):
        raise InputError("decode_layout='moved' moves the weights on the device; these layer weights are host arrays")
    if any(leaf.is_deleted() for leaf in leaves):
        raise InputError("decode_layout='moved': the layer weights are moved by another generate call")
    distinct = list({id(leaf): leaf for leaf in leaves}.values())  # a leaf shared by two names is cut once
    where = {id(leaf): i for i, leaf in enumerate(distinct)}
    placements = [leaf.sharding if leaf.committed else None for leaf in distinct]
    count = model.config.num_layers
    cut: list[tuple] = []
    try:  # one finally for all: a failure (or a held Ctrl-C delivered) mid-cut puts back what was cut
        with deferred():
            for leaf in distinct:
                cut.append(tuple(_layer_of(leaf, np.int32(i)) for i in range(count)))
                leaf.delete()
        yield tuple(treedef.unflatten([cut[where[id(leaf)]][i] for leaf in leaves]) for i in range(count))
    finally:
        restored, failed, interrupt = False, None, None
        while not restored:  # a Ctrl-C before the handler below is in place must not skip the restack
            try:
                with deferred():
                    back = list(distinct)
                    for j, (parts, placement) in enumerate(zip(cut, placements)):
                        try:
                            back[j] = _restacked(parts, placement)
                        except Exception as err:  # noqa: BLE001 - a device that cannot stack: the host does
                            failed = failed or err
                            back[j] = _restacked_via_host(parts, placement)
                    params["layers"] = treedef.unflatten([back[where[id(leaf)]] for leaf in leaves])
                    restored = True
            except KeyboardInterrupt as err:
                interrupt = err
        if failed is not None:
            raise failed
        if interrupt is not None:
            raise interrupt


def moved_shapes(layers, config) -> tuple:
    """What :func:`moved_layers` yields, as shapes (nothing moved): the calls are built from them, and so are
    compiles ahead (which also start compiling the cut's program for each leaf shape)."""
    leaf_shapes = []
    for leaf in jax.tree.leaves(layers):
        leaf_shapes.append(ahead.output_shapes(_layer_of, leaf, np.int32(0)))
        if ahead.enabled():
            ahead.in_background(_layer_of, leaf, np.int32(0))
    layer = jax.tree.unflatten(jax.tree.structure(layers), leaf_shapes)
    return (layer,) * config.num_layers


@jax.jit
def _layer_of(leaf, index):
    return jax.lax.dynamic_index_in_dim(leaf, index, keepdims=False)


def _restacked(parts: tuple, placement) -> jax.Array:
    """``parts`` stacked into one array placed as ``placement`` (None: uncommitted, as the leaf was), each part
    freed once stacked."""
    out = _stacker(placement)(*parts)
    for part in parts:
        part.delete()
    return out


def _restacked_via_host(parts: tuple, placement) -> jax.Array:
    """The fallback when the device cannot stack (out of memory, say): each part to the host and freed, then
    one array put back — no more device memory than the leaf itself."""
    host = []
    for part in parts:
        host.append(np.asarray(part))
        part.delete()
    stacked = np.stack(host)
    return jax.device_put(stacked, placement) if placement is not None else jnp.asarray(stacked)


@functools.cache
def _stacker(placement):
    stack = lambda *parts: jnp.stack(parts)  # noqa: E731
    return jax.jit(stack) if placement is None else jax.jit(stack, out_shardings=placement)


def fusable(model: Model) -> bool:
    """Fused projections unless a model axis splits each projection's rows on its own (tensor parallel)."""
    return model.mesh is None or dict(model.mesh.shape).get("model", 1) == 1


def room_for_layer_copy(params) -> bool:
    """True when every device can hold a second copy of its share of the layer weights (unknown: True)."""
    from jaxsteer.devices import room_for_copy

    return room_for_copy(params["layers"])
