"""Ctrl-C on the command line: exit status 130 and one honest line, every time.

Two faults made an interrupted ``jaxsteer run`` misbehave, both seen in core dumps and traces:

- **Segfault at exit.** JAX compiles programs on XLA's thread pool. A Ctrl-C while the main thread waits
  for a compile unwinds Python, and interpreter teardown then frees the XLA client and its devices while
  the worker is still compiling (``PjRtLoadedExecutable::Create`` → ``SingleDeviceSharding::Create`` on a
  freed device: SIGSEGV after the message, 2 runs in 8). Nothing public waits for an in-flight compile, so
  after an interrupt the command line leaves with ``os._exit`` once stdout and stderr are flushed: no
  teardown, no race. Every result is already in place or absent (atomic writes; the run manifest is
  rewritten after each stage), so there is nothing left to clean.
- **Ctrl-C lost.** Python runs a signal handler at the next bytecode of the main thread; when that is
  inside a garbage-collector callback (JAX registers ``_xla_gc_callback``) or a ``__del__``, the
  ``KeyboardInterrupt`` is printed as "Exception ignored" and the run goes on. :func:`install` puts a
  handler that, in such a frame, sends SIGINT again a moment later instead of raising there.

Only a process that is the ``jaxsteer`` command itself does this (``cli.main`` with ``argv=None``): a
caller of ``main([...])`` in its own interpreter keeps Python's behaviour.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading

RETRY_S = 0.05


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C with the command's own account of what it leaves behind (``str(e)``)."""


def install() -> None:
    """Route SIGINT through :func:`_on_sigint` (main thread only; elsewhere Python's handler stays)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum, frame) -> None:
    if _in_swallowing_frame(frame):
        threading.Timer(RETRY_S, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    raise KeyboardInterrupt


def _in_swallowing_frame(frame) -> bool:
    """Is the main thread inside code whose exceptions Python reports and drops (gc callbacks, ``__del__``)?"""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def cause(exc: BaseException) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` behind ``exc``, if any: a SIGINT handled while C++ called back into Python
    (JAX's jit cache comparing a static argument) is re-raised by the extension as another exception type."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc: KeyboardInterrupt) -> str:
    """What an interrupt leaves behind: the command's account, else the files this process put in place."""
    if isinstance(exc, Interrupted) and str(exc):
        return str(exc)
    from jaxsteer.results import written

    done = written()
    if not done:
        return "nothing was written"
    return f"{len(done)} file(s) had been written, each complete (the last: {done[-1]}); nothing is half written"


def leave(prog: str, exc: KeyboardInterrupt, own_process: bool) -> int:
    """Print ``PROG: interrupted; …`` and end with status 130: at once (:func:`exit_now`) in the process
    that is the command itself, by returning 130 for a caller of ``main([...])``."""
    if own_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the way out
    lead = "\n" if sys.stderr.isatty() else ""  # off the line a progress bar was drawing on
    print(f"{lead}{prog}: interrupted; {describe(exc)}", file=sys.stderr, flush=True)
    if own_process:
        exit_now(130)
    return 130


def exit_now(code: int) -> None:
    """Leave at once with ``code``, after flushing stdout and stderr (see the module docstring for why)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def deferred():
    """Hold a Ctrl-C until the block ends, then deliver it: for work that must not stop half done (the weights
    of a ``"moved"`` decode being cut or stacked again). Main thread only; elsewhere the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:  # a handler set outside Python reads as None: Python's own then
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if held:
            if callable(previous):
                previous(signal.SIGINT, held[0])
            elif previous is None or previous == signal.SIG_DFL:
                raise KeyboardInterrupt
