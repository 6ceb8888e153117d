"""γ × layer sweeps in one compiled call, sharing every layer below the first steered one.

A grid is a stack of dense per-layer deltas ``[G, L, D]`` (one steering plan per grid point, any
mix of layers, strengths and vectors). With ``s`` the lowest layer any grid point steers, blocks
``0 … s−1`` run **once** on the ``B`` prompts; blocks ``s … L−1`` run on a chunk of ``C`` grid points,
each group of points whose deltas still agree sharing one block of ``B`` rows
(:mod:`jaxsteer.model.plan_tree`: γ = 0 points are the plain model until their layer). The work is at
most ``s + G·(L − s)`` layer passes instead of ``G·L`` (:func:`layer_passes` counts it), and the chunk
size bounds memory. Chunks are padded with γ = 0 points where the grid does not fill them; they share one
compiled tail (when their trees differ, every chunk runs unshared rather than compiling per chunk).

``score_fn(logits)`` runs inside the compiled tail on ``[C, B, ...]`` logits (``logits_at`` as in
``forward``) and returns per-grid-point values ``[C, ...]`` — so a 262k-wide vocabulary never leaves
the device. ``jaxsteer.scoring`` has ready-made ones (multiple-choice log-likelihood).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from jaxsteer import ahead
from jaxsteer.errors import InputError
from jaxsteer.model.attention import resolve_impl
from jaxsteer.model.model import Model, check_tokens, host_or_device, on_mesh, ones_mask
from jaxsteer.model.plan_tree import chunked_plans, run_plan_tree
from jaxsteer.model.transformer import (
    default_positions,
    last_valid_index,
    plan_major,
    prepare,
    run_layers,
    unembed,
    wrap_positions,
)
from jaxsteer.progress import bar as progress_bar
from jaxsteer.sharding import to_host
from jaxsteer.steering.plan import check_layer, first_steered_layer


@dataclasses.dataclass(frozen=True)
class Grid:
    """Grid points: dense deltas ``[G, L, D]`` and one label dict per point (e.g. layer, gamma)."""

    deltas: np.ndarray
    labels: tuple[dict, ...]

    def __post_init__(self):
        if self.deltas.ndim != 3 or len(self.deltas) != len(self.labels):
            raise InputError(f"grid deltas {self.deltas.shape} do not match {len(self.labels)} labels")
        if len(self.labels) == 0:
            raise InputError("empty sweep grid")
        if not np.all(np.isfinite(self.deltas)):
            raise InputError("sweep grid contains NaN or inf deltas")

    @property
    def first_steered_layer(self) -> int:
        return first_steered_layer(self.deltas)


def layer_gamma_grid(
    vectors: Float[ArrayLike, "L D"], layers: Sequence[int], gammas: Sequence[float], base: np.ndarray | None = None
) -> Grid:
    """Every (layer, γ): ``γ·vectors[layer]`` at that layer, on top of fixed ``base`` deltas ``[L, D]``."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2:
        raise InputError(f"sweep vectors must be [L, D], got shape {vectors.shape}")
    num_layers, width = vectors.shape
    if base is not None and np.shape(base) != vectors.shape:
        raise InputError(f"base deltas have shape {np.shape(base)}, expected {vectors.shape}")
    if not layers or not len(gammas):
        raise InputError("a sweep needs at least one layer and one gamma")
    deltas, labels = [], []
    for layer, gamma in itertools.product(layers, gammas):
        check_layer(layer, num_layers)
        d = np.zeros((num_layers, width), np.float32) if base is None else np.array(base, np.float32)
        d[layer] += np.float32(gamma) * vectors[layer]
        deltas.append(d)
        labels.append({"layer": int(layer), "gamma": float(gamma)})
    return Grid(np.stack(deltas), tuple(labels))


def pair_grid(
    first: Float[ArrayLike, "L D"],
    first_layers: Sequence[int],
    first_gammas: Sequence[float],
    second: Float[ArrayLike, "_L _D"],  # [L, D] like ``first``: checked below with a one-line InputError
    second_layers: Sequence[int],
    second_gammas: Sequence[float],
) -> Grid:
    """Two vectors at once (surgical steering): every (l1, γ1, l2, γ2) combination."""
    first, second = np.asarray(first, np.float32), np.asarray(second, np.float32)
    if first.shape != second.shape or first.ndim != 2:
        raise InputError(f"the two vector sets must both be [L, D]; got {first.shape} and {second.shape}")
    if not (len(first_layers) and len(first_gammas) and len(second_layers) and len(second_gammas)):
        raise InputError("a pair sweep needs at least one layer and one gamma for each vector")
    deltas, labels = [], []
    for l1, g1, l2, g2 in itertools.product(first_layers, first_gammas, second_layers, second_gammas):
        check_layer(l1, len(first))
        check_layer(l2, len(second))
        d = np.zeros_like(first)
        d[l1] += np.float32(g1) * first[l1]
        d[l2] += np.float32(g2) * second[l2]
        deltas.append(d)
        labels.append({"layer1": int(l1), "gamma1": float(g1), "layer2": int(l2), "gamma2": float(g2)})
    return Grid(np.stack(deltas), tuple(labels))


@functools.partial(jax.jit, static_argnames=("config", "stop", "impl"))
def _prefix(params, input_ids, attention_mask, *, config, stop, impl):
    h, ctx = prepare(params, input_ids, attention_mask, config=config)
    h, _ = run_layers(params["layers"], h, ctx, config=config, stop=stop, impl=impl)
    return h


@functools.partial(jax.jit, static_argnames=("config", "tree", "impl", "score_fn", "logits_mode", "scope", "mesh"))
def _tail(
    params, h, attention_mask, deltas, logits_index, *, config, tree, impl, score_fn, logits_mode, scope, mesh=None
):
    """Blocks ``tree.start … L−1`` on ``B·C`` rows (prompt-major; plans that agree so far share rows, see
    :mod:`jaxsteer.model.plan_tree`), then the head and ``score_fn`` → ``[C, ...]``."""
    chunk = deltas.shape[0]
    b, t = attention_mask.shape
    positions = default_positions(attention_mask, (b, t))
    steer_mask = (
        positions < jnp.sum(attention_mask, axis=1, keepdims=True) if scope == "prompt" else jnp.ones((b, t), bool)
    )
    index = last_valid_index(attention_mask, (b, t)) if logits_mode == "last" else logits_index
    out, _ = run_plan_tree(  # the tail starts from the prefix's h, not from tokens; its last block only at `index`
        params["layers"], h, tree, deltas, positions=positions, attention_mask=attention_mask,
        steer_mask=steer_mask, config=config, impl=impl, mesh=mesh, queries=wrap_positions(index.reshape(b, -1), t),
    )  # fmt: skip
    logits = unembed(params, plan_major(out, chunk).reshape(chunk, *index.shape, -1), config)
    return score_fn(logits)


def run_grid(
    model: Model,
    input_ids,
    attention_mask,
    grid: Grid,
    score_fn: Callable,
    logits_at="last",
    chunk_size: int = 8,
    scope: str = "all",
    progress: bool = True,
) -> np.ndarray:
    """Evaluate ``score_fn`` at every grid point; returns a numpy array ``[G, ...]``.

    ``score_fn`` must be a traceable function of logits ``[C, B, ...]`` and is compiled into the tail:
    pass the same function object across calls to reuse the compiled code.
    """
    prefix, tails = _grid_calls(model, input_ids, attention_mask, grid, score_fn, logits_at, chunk_size, scope)
    h = ahead.call(prefix)
    outs = []
    bar = progress_bar(len(grid.labels), "sweep", "point", progress, leave=False)
    for run, keep in tails(h):
        outs.append(to_host(ahead.call(run))[:keep])
        if bar is not None:
            bar.update(keep)
    if bar is not None:
        bar.close()
    return np.concatenate(outs)


def compile_grid_ahead(
    model: Model,
    rows: int,
    width: int,
    grid: Grid,
    score_fn: Callable,
    logits_at="last",
    chunk_size: int = 8,
    scope: str = "all",
) -> int:
    """Start compiling, in the background (:mod:`jaxsteer.ahead`), the prefix and tail programs a later
    :func:`run_grid` on ``rows`` prompts × ``width`` tokens with this grid's structure (which points agree
    where; not their values) and this same ``score_fn`` object runs; returns how many compiles it started."""
    ids, mask = ahead.placeholder_batch(rows, width)
    prefix, tails = _grid_calls(model, ids, mask, grid, score_fn, logits_at, chunk_size, scope)
    h = ahead.output_shapes(prefix.func, *prefix.args, **prefix.keywords)  # on a mesh: compiles the prefix
    return ahead.start([prefix, *(run for run, _ in tails(h))])


def _grid_calls(model: Model, input_ids, attention_mask, grid: Grid, score_fn, logits_at, chunk_size, scope):
    """The checked calls of one :func:`run_grid`: the prefix (a partial with every argument) and a function of
    its output giving each tail call and how many of its points are real — made by the one code that also
    plans compiles ahead."""
    cfg = model.config
    input_ids, attention_mask = check_tokens(cfg, input_ids, attention_mask)
    if attention_mask is None:
        attention_mask = ones_mask(input_ids)
    if grid.deltas.shape[1:] != (cfg.num_layers, cfg.hidden_size):
        raise InputError(
            f"grid deltas have shape {grid.deltas.shape[1:]}, expected ({cfg.num_layers}, {cfg.hidden_size})"
        )
    if scope not in ("all", "prompt"):
        raise InputError(f"sweep scope {scope!r}: expected all or prompt (sweeps score prompts)")
    if chunk_size < 1:
        raise InputError(f"chunk_size={chunk_size} must be positive")
    impl = resolve_impl("auto", model.dtype)
    last = isinstance(logits_at, str) and logits_at == "last"  # an index array has no truth value
    mode, index = ("last", None) if last else ("index", host_or_device(logits_at, np.int32))
    start = min(grid.first_steered_layer, cfg.num_layers - 1)
    input_ids, attention_mask, index = on_mesh(model, input_ids, attention_mask, index)
    prefix = functools.partial(_prefix, model.params, input_ids, attention_mask, config=cfg, stop=start, impl=impl)
    chunk = min(chunk_size, len(grid.labels))
    common = dict(config=cfg, impl=impl, score_fn=score_fn, logits_mode=mode, scope=scope, mesh=model.mesh)

    def tails(h) -> list[tuple[functools.partial, int]]:
        return [
            (functools.partial(_tail, model.params, h, attention_mask, part, index, tree=tree, **common), keep)
            for part, tree, keep in chunked_plans(grid.deltas, chunk, start)
        ]

    return prefix, tails


def layer_passes(grid: Grid, num_layers: int, chunk_size: int | None = None) -> int:
    """Block applications per prompt of the shared-prefix sweep (``G·L`` for separate runs): the prefix once,
    then each chunk's plan tree; with ``chunk_size``, as :func:`run_grid` chunks (γ = 0 filler included)."""
    s = min(grid.first_steered_layer, num_layers - 1)
    chunk = min(chunk_size or len(grid.labels), len(grid.labels))
    return s + sum(tree.layer_passes() for _, tree, _ in chunked_plans(grid.deltas, chunk, s))
