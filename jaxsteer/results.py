"""Result files: atomic writes, the one figure writer, and the provenance block every result carries.

Nothing partial is ever written: each file goes to a temporary name in the same folder and is
renamed into place — by process 0 alone in a multi-process (``jax.distributed``) job, whose other
processes compute the same results (:func:`writes_results`). Every JSON result has a ``provenance``
entry saying what produced it. Every figure of the package is drawn on :func:`new_figure` and written by
:func:`write_figure` — PNG to look at, SVG for the paper — with no pyplot state and no backend switch for
the caller.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers", "numpy")


def process_umask() -> int:
    """The process umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once (no file is created in between)
    os.umask(mask)
    return mask


def temp_file(folder: str, prefix: str = ".tmp-", suffix: str = "") -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder`` with the mode an ordinary ``open`` would give (0666 less the umask).

    mkstemp makes files 0600 whatever the umask, so a result renamed into place would be unreadable by
    the rest of a group on a shared cluster; every temporary file of the package comes from here.
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~process_umask())
    return fd, tmp


def temp_dir(parent: str, prefix: str = ".tmp-") -> str:
    """``tempfile.mkdtemp`` in ``parent`` with the mode of ``os.makedirs`` (0777 less the umask), not 0700."""
    tmp = tempfile.mkdtemp(dir=parent, prefix=prefix)
    os.chmod(tmp, 0o777 & ~process_umask())
    return tmp


_WRITTEN: list[str] = []


def writes_results() -> bool:
    """Whether this process puts result files in place: in a multi-process job (``jax.distributed``) every
    process computes the same results and only process 0 writes them, so hosts sharing a folder never race."""
    jax = sys.modules.get("jax")  # not imported yet: one process (and the CLI's --help stays light)
    return jax is None or not jax.distributed.is_initialized() or jax.process_index() == 0


def sync_processes(name: str) -> None:
    """Wait until every process of a multi-process job gets here (nothing to wait for in one process)."""
    jax = sys.modules.get("jax")
    if jax is not None and jax.distributed.is_initialized() and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def commit(tmp: str, path: str) -> str:
    """Rename a finished temporary file (or folder) into place, and remember it for :func:`written`; on a
    process other than 0 of a multi-process job, drop it instead (process 0 writes the same result)."""
    if not writes_results():
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        else:
            os.remove(tmp)
        return path
    os.replace(tmp, path)
    _WRITTEN.append(os.path.abspath(path))
    return path


def written() -> list[str]:
    """Every path this process has put into place (for an honest message after an interrupt)."""
    return list(_WRITTEN)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = temp_file(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        commit(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def new_figure(figsize: tuple[float, float], layout: str | None = "constrained"):
    """A standalone Agg ``Figure``: no pyplot, so no global state, no display needed on a GPU node, the
    caller's matplotlib backend left alone, and nothing kept alive after the figure is written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def write_figure(fig, out_base: str | os.PathLike, *, tight: bool = False) -> tuple[str, str]:
    """``{out_base}.png`` and ``{out_base}.svg`` (150 dpi), each rendered in memory then written atomically.

    A ``.png``/``.svg`` suffix on ``out_base`` is dropped; ``tight`` crops to the drawn extent (labels
    outside the axes included). Returns (png path, svg path).
    """
    import matplotlib
    from matplotlib.text import Text

    base = os.fspath(out_base)
    for suffix in (".png", ".svg"):
        base = base.removesuffix(suffix)
    ticks = {id(t) for ax in fig.axes for t in (*ax.get_xticklabels(which="both"), *ax.get_yticklabels(which="both"))}
    for text in fig.findobj(Text):  # method and language names are text: "$" must not start mathtext
        if id(text) not in ticks:  # (a log axis labels its ticks 10^k in mathtext)
            text.set_parse_math(False)
    paths = []
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        # the SVG's date and random clip-path ids would make two identical runs' files differ
        with matplotlib.rc_context({"svg.hashsalt": "jaxsteer"}):
            fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight" if tight else None, metadata={"Date": None})
        paths.append(atomic_write(f"{base}.{fmt}", buf.getvalue()))
    return paths[0], paths[1]


def write_json(path: str | os.PathLike, obj: Any) -> str:
    return atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None) -> str:
    rows = list(rows)
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, buf.getvalue())


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def provenance(
    model=None, seed: int | None = None, command: str | None = None, device: bool = True, **extra: Any
) -> dict[str, Any]:
    """Who made a result: model and config hash, code version and commit, libraries, device, seed, date.
    ``device=False``: no device fields, and no JAX import (``jaxsteer plane`` computes on the host only)."""
    import jaxsteer

    info: dict[str, Any] = {
        "jaxsteer": jaxsteer.__version__,
        "git_commit": git_commit(),
        "libraries": library_versions(),
        "python": platform.python_version(),
    }
    if device:
        import jax

        info["device"] = str(getattr(jax.devices()[0], "device_kind", jax.devices()[0].platform))
        info["backend"] = jax.default_backend()
    info.update({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": seed, "command": command})
    if model is not None:
        info["model"] = {"source": model.source, "name": model.config.name, "config_hash": model.config.config_hash()}
    info.update(extra)
    return info
