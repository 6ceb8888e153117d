"""Plans that agree below a layer share that layer's work: the prefix tree of a grid of steering plans.

A grid of ``G`` plans over ``B`` prompts is ``B·G`` rows (prompt-major: a prompt's plans side by side). Two plans whose deltas are equal on blocks
``0 … l`` have the same residual stream after block ``l``, so rows are only needed for the *distinct*
prefixes. :func:`plan_tree` cuts the layers into segments over which the plans' grouping stays fixed (going
up it only ever refines); :func:`run_plan_tree` runs each segment on one block of ``B`` rows per group and,
at each cut, gives every new group a copy of its parent's rows. Surgical-steering selection — LOC-only
candidates unsteered below the LOC layer, SUR candidates all carrying the same EN delta there — runs 2
groups between the EN and LOC layers instead of 18, and identical plans (LOC γ = 0 chosen, so LOC equals
the plain model) run once.

The tree is static (it shapes the compiled program): values of the deltas do not change it, the pattern of
which plans agree where does.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jaxsteer.model.transformer import make_context, plan_row_deltas, run_layers, tile_rows
from jaxsteer.sharding import pin_rows, replicated


@dataclasses.dataclass(frozen=True)
class Segment:
    """Blocks ``start … stop−1``, over which every plan stays in one group."""

    start: int
    stop: int
    groups: tuple[int, ...]  # each plan's group (numbered by first appearance)
    parents: tuple[int, ...]  # each group's group in the segment below (0: the shared prefix)

    @property
    def size(self) -> int:
        return len(self.parents)

    @property
    def representatives(self) -> tuple[int, ...]:
        """The first plan of each group: whose deltas the group's rows get."""
        return tuple(self.groups.index(j) for j in range(self.size))


@dataclasses.dataclass(frozen=True)
class PlanTree:
    segments: tuple[Segment, ...]

    @property
    def start(self) -> int:
        """The first block the tree runs; every plan agrees below it (the caller's shared prefix)."""
        return self.segments[0].start

    @property
    def num_plans(self) -> int:
        return len(self.segments[0].groups)

    def layer_passes(self) -> int:
        """Block applications per prompt above :attr:`start` (``G·(L − start)`` without sharing)."""
        return sum((s.stop - s.start) * s.size for s in self.segments)


def plan_tree(deltas: Float[np.ndarray, "G L D"], start: int) -> PlanTree:
    """The segments of blocks ``start … L−1`` for dense deltas ``[G, L, D]`` (compared exactly); every plan
    must be equal below ``start`` (it is the shared prefix the caller runs once)."""
    deltas = np.asarray(deltas)
    count, num_layers = deltas.shape[:2]
    if not 0 <= start < num_layers:
        raise ValueError(f"plan tree start {start} is outside 0..{num_layers - 1}")
    if start and not np.all(deltas[:, :start] == deltas[:1, :start]):
        raise ValueError(f"plans differ below block {start}, which the tree assumes shared")
    cuts = []
    groups = np.zeros(count, np.int64)
    for layer in range(start, num_layers):
        refined = _by_first_appearance(groups * count + _row_ids(deltas[:, layer]))
        if layer == start or refined.max() > groups.max():
            first = [int(np.argmax(refined == j)) for j in range(int(refined.max()) + 1)]
            cuts.append((layer, tuple(int(x) for x in refined), tuple(int(groups[p]) for p in first)))
        groups = refined
    stops = [c[0] for c in cuts[1:]] + [num_layers]
    return PlanTree(tuple(Segment(lo, hi, g, p) for (lo, g, p), hi in zip(cuts, stops)))


def unshared_tree(count: int, start: int, num_layers: int) -> PlanTree:
    """Every plan on its own rows from ``start`` up (the shared prefix only)."""
    return PlanTree((Segment(start, num_layers, tuple(range(count)), (0,) * count),))


def shared_tree(count: int, num_layers: int) -> PlanTree:
    """Every plan on the same rows throughout (for a prefill no plan steers, e.g. scope ``"generated"``): the
    prefix runs blocks ``0 … L−2``, the tree the last block once, and the rows are copied to each plan."""
    return PlanTree((Segment(num_layers - 1, num_layers, (0,) * count, (0,)),))


def chunked_plans(
    plans: Float[np.ndarray, "G L D"], chunk: int, start: int, prompt_steered: bool = True
) -> list[tuple[np.ndarray, PlanTree, int]]:
    """``plans`` in equal chunks of ``chunk`` (zero plans fill the last, so one program shape serves all), each
    with its tree and how many of its plans are real. The trees share what each chunk's plans share when
    every chunk has the same tree; otherwise every chunk gets the unshared tree, so that a long sweep whose
    chunks fall differently on the grid compiles once, not once per chunk. ``prompt_steered=False`` (scope
    ``"generated"``): no plan touches the prompt, so every chunk gets the :func:`shared_tree`."""
    plans = np.asarray(plans, np.float32)
    count = len(plans)
    parts = []
    for lo in range(0, count, chunk):
        part = plans[lo : lo + chunk]
        parts.append((np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), np.float32)]), len(part)))
    if not prompt_steered:
        trees = [shared_tree(chunk, plans.shape[1])] * len(parts)
    else:
        trees = [plan_tree(part, start) for part, _ in parts]
    if len(set(trees)) > 1:
        trees = [unshared_tree(chunk, start, plans.shape[1])] * len(parts)
    return [(part, tree, keep) for (part, keep), tree in zip(parts, trees)]


def _row_ids(rows: np.ndarray) -> np.ndarray:
    """One id per distinct row, by its bytes (a dict, not ``np.unique(axis=0)``: that sorts structured rows and
    took ≈ 1 s a call for a 12B selection grid — device time the host held up)."""
    seen: dict[bytes, int] = {}
    return np.array([seen.setdefault(row.tobytes(), len(seen)) for row in np.ascontiguousarray(rows)], np.int64)


def _by_first_appearance(labels: np.ndarray) -> np.ndarray:
    """Relabel ``labels`` 0, 1, … in the order their values first appear."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse.reshape(-1)]


def run_plan_tree(
    layers,
    h: Float[Array, "B T D"],
    tree: PlanTree,
    plans: Float[Array, "G L D"],
    *,
    positions: Int[Array, "B T"],
    attention_mask: Int[Array, "B T"],
    steer_mask: Bool[Array, "B T"] | None,
    config,
    collect=None,
    mesh=None,
    queries: Int[Array, "B J"] | None = None,
    **run_kw,
) -> tuple[Float[Array, "GB Tout D"], list]:
    """Blocks ``tree.start … L−1`` of every plan on the prompts' residual stream ``h`` (the shared prefix's output).

    ``positions``, ``attention_mask`` and ``steer_mask`` describe the ``B`` prompts; a group's rows get them
    tiled (prompt-major, as :func:`~jaxsteer.model.transformer.tile_rows`). Returns the last block's output on
    ``B·G`` rows, prompt-major, and per segment what ``collect`` kept, also expanded to ``B·G`` rows (axis 1: a
    layer axis leads). ``run_kw`` goes to :func:`~jaxsteer.model.transformer.run_layers`. On a ``mesh``, every
    segment's rows and what it keeps are split over the batch shards (:func:`~jaxsteer.sharding.pin_rows`).
    ``queries`` (``[B, J]`` per prompt): the final block computes only those positions (``run_layers``'s
    ``queries``); the output is then ``[B·G, J, D]``.
    """
    rows = h.shape[0]
    kept = []
    if mesh is not None:  # [G, L, D] is small: one full copy a device, never resharded from D to rows per segment
        plans = jax.lax.with_sharding_constraint(plans, replicated(mesh))
    for seg in tree.segments:
        h = pin_rows(_rows_of(h, seg.parents, rows), mesh)
        final = seg is tree.segments[-1] and queries is not None
        deltas = plan_row_deltas(plans[jnp.asarray(seg.representatives)], rows)
        tiled = [None if x is None else tile_rows(x, seg.size) for x in (positions, attention_mask, steer_mask)]
        h, out = run_layers(
            layers, h, make_context(config, *tiled), config=config, start=seg.start, stop=seg.stop,
            deltas=deltas, collect=collect, queries=tile_rows(queries, seg.size) if final else None, **run_kw,
        )  # fmt: skip
        if collect is not None:
            kept.append(jax.tree.map(lambda x, seg=seg: pin_rows(_rows_of(x, seg.groups, rows, axis=1), mesh, 1), out))
    return pin_rows(_rows_of(h, tree.segments[-1].groups, rows), mesh), kept


def _rows_of(x: Array, groups: tuple[int, ...], rows: int, axis: int = 0) -> Array:
    """For each of ``rows`` prompts, its rows of the groups ``groups`` names, in that order (prompt-major, as
    :func:`~jaxsteer.model.transformer.tile_rows`). A take within each prompt's block of rows: on a mesh whose
    batch shards split the prompts, no shard reads another's rows."""
    size = x.shape[axis] // rows
    if groups == tuple(range(size)):
        return x
    blocks = x.reshape(*x.shape[:axis], rows, size, *x.shape[axis + 1 :])
    picked = jnp.take(blocks, jnp.asarray(groups, jnp.int32), axis=axis + 1)
    return picked.reshape(*x.shape[:axis], rows * len(groups), *x.shape[axis + 1 :])
