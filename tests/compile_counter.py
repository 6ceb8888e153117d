"""Count XLA compiles inside a block (jax's monitoring events; one listener for the whole test process)."""

from __future__ import annotations

import contextlib
import threading

import jax

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_count = [0]
_names: list[tuple[str, str]] = []  # (thread, compiled function), in order


def _on_event(event: str, duration: float, fun_name: str = "", **_) -> None:
    if event == BACKEND_COMPILE:
        _count[0] += 1
        _names.append((threading.current_thread().name, fun_name))


jax.monitoring.register_event_duration_secs_listener(_on_event)


@contextlib.contextmanager
def compiles():
    """``with compiles() as n: …`` then ``n()`` is the number of XLA compiles the block made."""
    start = _count[0]
    yield lambda: _count[0] - start


@contextlib.contextmanager
def compiled_names(thread: str | None = None):
    """``with compiled_names() as names: …`` then ``names()`` lists the functions compiled in the block (by the
    thread of that name only, if given)."""
    start = len(_names)
    yield lambda: [name for by, name in _names[start:] if thread is None or by == thread]
