"""Compile ahead: start a program's XLA compile in a background thread before its first call.

A 12B experiment's first run waits on its compiles — on one H200 the Dev2 selection grid alone compiles for
40 s, and the experiment's 11 programs for 72 s of its 279 (``bench/RESULTS.md``, session 8) — while the
host's other cores idle. XLA compiles without the GIL, and JAX's in-memory cache is shared by every thread:
a program lowered and compiled here from the same arguments (same shapes, dtypes, static values) as its later
call is found there, so the call does not compile again (``tests/test_ahead.py`` counts the compiles). The
stages that know a later stage's shapes start those compiles early (:func:`in_background`), and a call that
may find its compile still running waits for it (:func:`wait_for`) instead of compiling the same program a
second time.

On by default on accelerators; off on a CPU, where a background compile takes a core from the work in the
foreground (tests, the demo on a laptop). ``JAXSTEER_COMPILE_AHEAD=1`` or ``0`` decides instead. Off in
multi-process (multi-host) jobs.
A compile ahead never fails a run: its error is printed once and the call compiles in the foreground.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import numpy as np

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pending: dict[tuple, Future] = {}
_warned: list[str] = []


def enabled() -> bool:
    """Whether stages compile later stages' programs ahead (``JAXSTEER_COMPILE_AHEAD``; default: not on a CPU;
    never in a multi-process job, whose planning code agrees on sizes across processes — a collective that a
    background thread must not interleave with the foreground's)."""
    import jax

    if jax.process_count() > 1:
        return False
    flag = os.environ.get("JAXSTEER_COMPILE_AHEAD", "").strip().lower()
    if flag in ("0", "1", "false", "true", "no", "yes", "off", "on"):
        return flag in ("1", "true", "yes", "on")
    from jaxsteer.devices import platform

    return platform() != "cpu"


def signature(fn, args: tuple, kwargs: dict) -> tuple:
    """What JAX's cache tells calls of ``fn`` apart by, near enough: arrays by shape and dtype, everything
    else (static arguments, pytree structure) by value."""
    import jax

    leaves, treedef = jax.tree.flatten((args, kwargs))
    key = []
    for leaf in leaves:
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            key.append((tuple(leaf.shape), str(np.dtype(leaf.dtype))))
        else:
            key.append(leaf)
    return (id(fn), treedef, tuple(key))


def in_background(fn, *args, **kwargs) -> Future | None:
    """``fn.lower(*args, **kwargs).compile()`` in a background thread (``fn`` a ``jax.jit`` function; arrays may
    be ``jax.ShapeDtypeStruct``), unless the same signature is compiling or compiled here already."""
    try:
        key = signature(fn, args, kwargs)
        hash(key)
    except TypeError:  # an unhashable static argument: JAX could not cache it either
        return None
    with _lock:
        if key not in _pending:
            _pending[key] = _executor().submit(_compile, fn, args, kwargs)
        return _pending[key]


def wait_for(fn, *args, **kwargs) -> None:
    """Block until a compile ahead of this call has finished, if one is running; one still queued behind
    others is taken back (the call compiles its program itself rather than wait for the queue)."""
    try:
        key = signature(fn, args, kwargs)
        future = _pending.get(key)
    except TypeError:  # unhashable: never compiled ahead
        return
    if future is None:
        return
    if not future.cancel() and not future.cancelled():
        with contextlib.suppress(CancelledError):
            future.result()
    _pending.pop(key, None)  # compiled (JAX's cache has it) or taken back: the entry has served


def call(run: functools.partial):
    """``run()`` — a jitted function with every argument given — after waiting for its compile ahead if one is
    running."""
    if _pending:
        wait_for(run.func, *run.args, **run.keywords)
    return run()


def start(runs) -> int:
    """Compile each of ``runs`` (partials as :func:`call` takes) ahead; returns how many distinct compiles
    that is (equal calls share one program)."""
    started = [in_background(run.func, *run.args, **run.keywords) for run in runs]
    return len({id(f) for f in started if f is not None})


def placeholder_batch(rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and a full mask of a batch's shape: what a compile ahead builds its call from (the values never
    reach a program; the shapes and dtypes are the later call's)."""
    ids = np.zeros((rows, width), np.int32)
    return ids, np.ones_like(ids)


def output_shapes(fn, *args, **kwargs):
    """``fn``'s outputs for these arguments as ``jax.ShapeDtypeStruct``s that stand for what a call returns.
    JAX tells a committed array (an output of a program whose inputs were placed: loaded weights, a mesh) from
    an uncommitted one in its cache key, so the shapes carry the placement a call's outputs will have: none
    where no input is placed; the device where every placed input is on one device; on a mesh, what the
    compiled program says (``fn`` is compiled here, which its call then finds)."""
    import jax
    from jax.sharding import SingleDeviceSharding

    shapes = jax.eval_shape(functools.partial(fn, **kwargs), *args)
    placements = {_placement(x) for x in jax.tree.leaves(args)} - {None}
    if not placements:
        return shapes
    if len(placements) == 1 and isinstance(one := next(iter(placements)), SingleDeviceSharding):
        return jax.tree.map(lambda x: _placed(x, one), shapes)
    placed = fn.lower(*args, **kwargs).compile().output_shardings
    return jax.tree.map(_placed, shapes, placed)


def _placed(x, sharding):
    """``x``'s shape, dtype and weak type with this placement."""
    import jax

    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding, weak_type=x.weak_type)


def _placement(x):
    """An input's placement when JAX keeps it (a committed array, a ShapeDtypeStruct given one), else None."""
    import jax

    if isinstance(x, jax.Array):  # every array has a sharding; an uncommitted one may still move
        return x.sharding if x.committed else None
    return getattr(x, "sharding", None)


def _compile(fn, args, kwargs) -> bool:
    try:
        fn.lower(*args, **kwargs).compile()
        return True
    except Exception as err:  # noqa: BLE001 - a compile ahead is an optimisation: the call compiles anyway
        name = getattr(fn, "__name__", repr(fn))
        if name not in _warned:
            _warned.append(name)
            print(f"[jaxsteer] compiling {name} ahead failed ({type(err).__name__}: {err}); "
                  "it compiles at its first call instead", file=sys.stderr, flush=True)  # fmt: skip
        return False


def plan(work: Callable, *args, **kwargs) -> None:
    """``work(*args, **kwargs)`` — code that starts compiles ahead — when compiling ahead is on. It runs here,
    in the caller's thread (planning is host work of milliseconds: tokenising, shapes), so that every compile
    it starts is registered before the caller goes on to the calls that wait for them; an error only prints a
    line."""
    if not enabled():
        return
    try:
        work(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - as _compile
        print(f"[jaxsteer] planning compiles ahead failed ({type(err).__name__}: {err})", file=sys.stderr, flush=True)


def wait_all() -> None:
    """Block until every compile started here so far has finished (or was taken back)."""
    for future in list(_pending.values()):
        with contextlib.suppress(CancelledError):
            future.result()


def cancel() -> None:
    """Take back every compile not yet started and let the pool go (a run that ends or fails must not wait at
    exit for compiles queued for stages it will not reach; one already compiling still finishes)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
        for future in _pending.values():
            future.cancel()
        _pending.clear()
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _executor() -> ThreadPoolExecutor:
    """The one pool (made on first use; the caller holds ``_lock``): a core is left to the foreground."""
    global _pool
    if _pool is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
        _pool = ThreadPoolExecutor(max(1, min(8, cores - 1)), thread_name_prefix="jaxsteer-ahead")
    return _pool
