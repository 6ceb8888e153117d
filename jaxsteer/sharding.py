"""The device mesh, partition rules by parameter name, and placing batches on the mesh.

One code path for 1 CPU, N GPUs of one host, and multi-host GPU/TPU: a ``Mesh`` with axes
``("data", "fsdp", "model")``. The batch axis is sharded over ``data`` and ``fsdp`` together, so every
device holds ``batch / (data·fsdp)`` rows (inference: prompts, and the rows of sweep grid points).

- Training (:data:`DEFAULT_RULES`): parameters (and their Adam moments) are sharded ZeRO-3 style over
  ``fsdp`` along their largest dimension that divides evenly — never the stacked layer axis, which the
  layer scan walks — and replicated over ``data``; XLA all-gathers one layer's weights inside the scan.
- Inference (:data:`INFERENCE_RULES`): tensor parallelism over ``model`` — q/k/v and gate/up split their
  output features (whole heads, whole MLP columns), o/down their input features, the tied embedding its
  vocabulary rows — and the other dimension over ``fsdp`` (ZeRO-3: a model larger than one device's
  memory is gathered a layer at a time). :func:`check_inference_mesh` refuses a mesh that does not divide
  the devices or the heads, or whose devices cannot hold the weights, before any weight is read.

Multi-host: run the same command on every host with ``mesh.distributed: true``; :func:`initialize` calls
``jax.distributed.initialize()`` (coordinator, process count and id come from the cluster environment —
SLURM, TPU metadata, or ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``). Every
host builds the same global batch deterministically and contributes the rows of its own devices
(:func:`put_batch`, :func:`place_rows`), so no data is exchanged between hosts; results, of which each
process holds only its own devices' shards, are read back whole on every process by :func:`to_host`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxsteer import devices
from jaxsteer.errors import ConfigError
from jaxsteer.model.family import DecoderConfig, family_of


@dataclasses.dataclass(frozen=True)
class MeshSpec:
    data: int = -1  # data-parallel axis; -1: all devices left after fsdp and model
    fsdp: int = 1  # parameter-sharding axis (ZeRO-3)
    model: int = 1  # tensor-parallel axis: splits attention heads and MLP columns (inference)
    distributed: bool = False  # call jax.distributed.initialize() first (multi-host)


AXES = ("data", "fsdp", "model")
BATCH = ("data", "fsdp")  # the batch axis spans both mesh axes
LARGEST = "fsdp_largest"  # rule value: shard over fsdp along the largest evenly divisible non-layer dim

DEFAULT_RULES: tuple[tuple[str, PartitionSpec | str], ...] = (
    (r"norm$", PartitionSpec()),  # vectors of size D or Dh: replicating them costs nothing
    (r"(^|/)embed$", PartitionSpec("fsdp", None)),  # [V, D]: vocab rows (also the tied head's output dim)
    (r"^lora/.*/a$", PartitionSpec(None, None, "fsdp")),  # [L, r, in]
    (r"^lora/.*/b$", PartitionSpec(None, "fsdp", None)),  # [L, out, r]
    (r".*", LARGEST),  # stacked projections [L, out, in]
)


def initialize(spec: MeshSpec) -> None:
    """``jax.distributed.initialize()`` once, when the config asks for multi-host (a job that initialized it
    itself is left as it is). jax reads ``JAX_COORDINATOR_ADDRESS`` but not the process count and id, which
    are passed on from ``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID`` when set (else the cluster's are detected)."""
    if not spec.distributed or jax.distributed.is_initialized():
        return
    count, index = (_env_int(name) for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))
    try:
        jax.distributed.initialize(num_processes=count, process_id=index)
    except ValueError as e:  # no cluster found: e.g. "coordinator_address should be defined"
        raise ConfigError(
            f"mesh.distributed is set but no multi-host cluster was found ({e}); set JAX_COORDINATOR_ADDRESS, "
            "JAX_NUM_PROCESSES and JAX_PROCESS_ID, or run under a cluster jax detects (Cloud TPU, SLURM)"
        ) from None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} must be a whole number") from None


def mesh_shape(spec: MeshSpec, n: int) -> tuple[int, int, int]:
    """``(data, fsdp, model)`` for ``n`` devices; ``data = -1`` takes what fsdp and model leave."""
    fsdp, model = spec.fsdp, getattr(spec, "model", 1)
    if fsdp < 1 or model < 1:
        raise ConfigError(f"mesh fsdp={fsdp} and model={model} must be ≥ 1")
    data = n // (fsdp * model) if spec.data == -1 else spec.data
    if data * fsdp * model != n or data < 1:
        raise ConfigError(
            f"mesh data={spec.data} × fsdp={fsdp} × model={model} does not cover the {n} available device(s)"
        )
    return data, fsdp, model


def make_mesh(spec: MeshSpec, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, fsdp, model)`` mesh over ``devices`` (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(spec, len(devices))
    try:  # topology-aware order on TPU slices and NVLink islands; plain order elsewhere
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(shape, devices)
    except Exception:  # noqa: BLE001 - any failure falls back to the plain order
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, AXES)


def batch_devices(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


def check_batch(batch: int, mesh: Mesh, what: str) -> None:
    n = batch_devices(mesh)
    if batch % n:
        raise ConfigError(f"{what}={batch} is not divisible by the mesh's {n} batch shards (data × fsdp)")


def path_name(path) -> str:
    return "/".join(_key(k) for k in path)


def spec_for(name: str, shape: tuple[int, ...], fsdp: int, rules=DEFAULT_RULES) -> PartitionSpec:
    """The first rule whose regex matches ``name`` (``base/layers/q_proj``), checked against the shape.

    A rule's axis that does not divide evenly falls back to replication of that dimension, so odd
    shapes (tiny test models, 262208-row vocabularies) never fail to shard.
    """
    spec = next((rule for pattern, rule in rules if re.search(pattern, name)), PartitionSpec())
    if spec == LARGEST:
        first = 1 if name.split("/")[-2:-1] == ["layers"] or name.startswith("lora/") else 0
        dims = sorted(range(first, len(shape)), key=lambda i: (-shape[i], i))
        parts = [None] * len(shape)
        for i in dims:
            if fsdp > 1 and shape[i] % fsdp == 0:
                parts[i] = "fsdp"
                break
        return _trim(parts)
    parts = list(spec) + [None] * (len(shape) - len(spec))
    return _trim(
        [p if p is None or (fsdp > 1 and shape[i] % fsdp == 0) else None for i, p in enumerate(parts[: len(shape)])]
    )


def _trim(parts: list) -> PartitionSpec:
    """``P("fsdp", None, None)`` → ``P("fsdp")``: one spelling per placement, so specs compare equal."""
    while parts and parts[-1] is None:
        parts.pop()
    return PartitionSpec(*parts)


def param_shardings(tree, mesh: Mesh, rules=DEFAULT_RULES):
    """``NamedSharding`` per leaf of a params (or abstract params) tree, by its path name."""
    fsdp = mesh.shape["fsdp"]

    def one(path, x):
        return NamedSharding(mesh, spec_for(path_name(path), tuple(x.shape), fsdp, rules))

    return jax.tree_util.tree_map_with_path(one, tree)


def opt_state_shardings(abstract_state, params_shardings, mesh: Mesh):
    """Adam moments follow their parameter's sharding; counters and other scalars are replicated.

    A state leaf belongs to the parameter whose path its own path ends with (``…mu/base/layers/q_proj``)
    and whose shape it has; this holds through ``multi_transform``/``masked`` wrappers, whose frozen
    leaves are empty ``MaskedNode``s.
    """
    by_path = {}
    for path, sh in jax.tree_util.tree_leaves_with_path(
        params_shardings, is_leaf=lambda x: isinstance(x, NamedSharding)
    ):
        by_path[tuple(_key(k) for k in path)] = sh
    depth = max((len(p) for p in by_path), default=0)

    def one(path, leaf):
        keys = tuple(_key(k) for k in path)
        for n in range(min(depth, len(keys)), 0, -1):
            sh = by_path.get(keys[-n:])
            if sh is not None and len(sh.spec) <= len(leaf.shape):
                return sh
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree_util.tree_map_with_path(one, abstract_state)


def _key(k) -> str:
    return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int, batch_axis: int = 1) -> NamedSharding:
    """Shard axis ``batch_axis`` (after the accumulation axis) over ``data × fsdp``."""
    parts = [None] * ndim
    parts[batch_axis] = BATCH
    return NamedSharding(mesh, PartitionSpec(*parts))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Place a host batch (every array ``[A, B, ...]``) on the mesh, each process feeding its own rows."""

    return {k: _place(mesh, np.asarray(v), 1 if np.ndim(v) >= 2 else None) for k, v in batch.items()}


def activation_constraint(mesh: Mesh | None):
    """A function that pins ``[B, T, D]`` activations to the batch sharding (identity without a mesh)."""
    if mesh is None or mesh.size == 1:
        return lambda h: h
    sharding = NamedSharding(mesh, PartitionSpec(BATCH, None, None))
    return lambda h: jax.lax.with_sharding_constraint(h, sharding)


# --- inference ----------------------------------------------------------------------------------------------
INFERENCE_RULES: tuple[tuple[str, PartitionSpec], ...] = (
    (r"norm$", PartitionSpec()),
    (r"(^|/)embed$", PartitionSpec("model", "fsdp")),  # [V, D]: vocab rows over model, D over fsdp
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)$", PartitionSpec(None, "model", "fsdp")),  # [L, out, in]
    (r"(o_proj|down_proj)$", PartitionSpec(None, "fsdp", "model")),  # [L, out, in]: input features split
    (r".*", PartitionSpec()),
)


def inference_spec(name: str, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """The first :data:`INFERENCE_RULES` rule matching ``name``; an axis that does not divide its dimension
    evenly is dropped (replicated), so odd shapes such as a 262208-row vocabulary still place."""
    spec = next(rule for pattern, rule in INFERENCE_RULES if re.search(pattern, name))
    parts = list(spec) + [None] * (len(shape) - len(spec))
    return _trim([p if p is None or shape[i] % mesh.shape[p] == 0 else None for i, p in enumerate(parts)])


def inference_sharding(mesh: Mesh):
    """``sharding(name, shape)`` for :func:`jaxsteer.checkpoint.hf.load_params` (names ``embed``,
    ``final_norm`` or a layer key such as ``q_proj``)."""
    return lambda name, shape: NamedSharding(mesh, inference_spec(name, tuple(shape), mesh))


def check_inference_mesh(
    spec: MeshSpec, config: DecoderConfig, dtype_bytes: int, batch: int | None = None
) -> tuple[int, ...]:
    """Refuse, in one line naming the numbers, a mesh that does not cover the devices, split whole heads,
    divide the batch, or leave room for the weights on each device; returns ``(data, fsdp, model)``."""
    data, fsdp, model = mesh_shape(spec, jax.device_count())
    for what, count in (("query heads", config.num_heads), ("key/value heads", config.num_kv_heads)):
        if count % model:
            raise ConfigError(f"mesh model={model} does not divide the model's {count} {what}")
    if batch is not None and batch % (data * fsdp):
        raise ConfigError(f"batch_size={batch} is not divisible by the mesh's {data * fsdp} batch shards (data × fsdp)")
    per_layer = sum(int(np.prod(s)) for s in family_of(config).layer_shapes(config).values())
    total = (config.num_layers * per_layer + config.vocab_size * config.hidden_size) * dtype_bytes
    need = total / (fsdp * model)
    free = devices.free_bytes(jax.local_devices()[0])  # this process's own (another's cannot be asked)
    if free is not None and need > free:
        raise ConfigError(
            f"the weights need {need / 2**30:.1f} GiB per device ({total / 2**30:.1f} GiB over fsdp={fsdp} × "
            f"model={model}) but a device has {free / 2**30:.1f} GiB free: raise mesh.fsdp or mesh.model"
        )
    return data, fsdp, model


def inference_mesh(spec: MeshSpec | Mesh | None) -> Mesh | None:
    """The mesh inference runs on (``None``: one device, nothing placed)."""
    if spec is None or isinstance(spec, Mesh):
        return spec
    initialize(spec)
    return make_mesh(spec)


def pin_rows(x: jax.Array, mesh: Mesh | None, axis: int = 0) -> jax.Array:
    """Inside a jitted grid program: ``x``'s rows (axis ``axis``) split over the mesh's batch shards, every
    other axis left to the partitioner (a model axis keeps splitting heads). Grid rows (row ``b·G + g``,
    :func:`~jaxsteer.model.transformer.tile_rows`) merge a plan axis into the sharded prompt axis, which the
    partitioner may answer by replicating them: without the pin, every data shard computed every plan's rows.
    Rows that do not divide stay as they are (correct, unsplit)."""
    if mesh is None or x.shape[axis] % batch_devices(mesh) or batch_devices(mesh) == 1:
        return x
    parts = [PartitionSpec.UNCONSTRAINED] * x.ndim
    parts[axis] = BATCH
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*parts)))


def place_rows(mesh: Mesh | None, x, axis: int = 0):
    """Put a host array on ``mesh`` with axis ``axis`` split over the batch shards (``data × fsdp``);
    replicated when the rows do not divide (always correct; the batch just is not split)."""
    if mesh is None:
        return x
    x = np.asarray(x)
    return _place(mesh, x, axis if x.shape[axis] % batch_devices(mesh) == 0 else None)


def _place(mesh: Mesh, x: np.ndarray, batch_axis: int | None) -> jax.Array:
    """``x`` on the mesh, ``batch_axis`` split over the batch shards (``None``: replicated); every process
    fills the shards of its own devices from the same host array (multi-host safe)."""
    sharding = replicated(mesh) if batch_axis is None else batch_sharding(mesh, x.ndim, batch_axis)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x) -> np.ndarray:
    """``np.asarray(x)``, whole on every process also when ``x`` is spread over several (a pytree such as a
    ``ForwardOutput``: ``jax.tree.map(to_host, out)``).

    An array on a mesh that spans several processes (multi-host) is not fully addressable: each process
    holds only its own devices' shards, and ``np.asarray`` refuses it. Such an array is all-gathered across
    the processes (a collective: every process makes the same call, as every process runs the same
    program); a replicated one is read from a local copy.
    """
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    # tiled=True: the global array itself (tiled=False stacks per-process local arrays on a new axis)
    return multihost_utils.process_allgather(x, tiled=True)
