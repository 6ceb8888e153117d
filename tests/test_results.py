"""Result files: the one figure writer (PNG + SVG, atomic, no pyplot) is the only place that saves a figure;
files and folders get the modes the umask allows; the process knows what it has written."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

import jaxsteer
from jaxsteer.results import new_figure, write_figure, write_json, written

PACKAGE = pathlib.Path(jaxsteer.__file__).parent
FORBIDDEN = (".savefig(", "import matplotlib.pyplot", "matplotlib.use(")


def test_write_figure_writes_png_and_svg_atomically(tmp_path):
    fig = new_figure((3, 2))
    fig.subplots().plot([0, 1], [1, 0])
    png, svg = write_figure(fig, tmp_path / "sub" / "line.png")  # a suffix is dropped; the folder is made
    assert (png, svg) == (str(tmp_path / "sub" / "line.png"), str(tmp_path / "sub" / "line.svg"))
    assert pathlib.Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<svg" in pathlib.Path(svg).read_text()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["line.png", "line.svg"]  # no temporaries


def test_no_module_saves_figures_or_touches_pyplot_but_the_writer():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "results.py" and any(s in path.read_text(encoding="utf-8") for s in FORBIDDEN)
    ]
    assert offenders == []


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_result_files_and_folders_get_the_modes_the_umask_allows(umask, mask, tmp_path):
    """mkstemp/mkdtemp make 0600/0700 whatever the umask: unreadable to a group on a shared cluster."""
    import numpy as np

    from jaxsteer.checkpoint.safetensors_io import write_safetensors
    from jaxsteer.results import temp_dir

    umask(mask)
    write_json(tmp_path / "r.json", {"a": 1})
    write_safetensors(tmp_path / "t.safetensors", {"x": np.zeros(2, np.float32)})
    folder = temp_dir(str(tmp_path))
    for name in ("r.json", "t.safetensors"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask, name
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o777 & ~mask


def test_written_lists_what_this_process_put_in_place(tmp_path):
    before = written()
    path = write_json(tmp_path / "w.json", {})
    assert written() == [*before, os.path.abspath(path)]


def test_only_process_0_of_a_multi_process_job_puts_files_in_place(tmp_path, job):
    import numpy as np

    from jaxsteer.checkpoint.safetensors_io import write_safetensors
    from jaxsteer.results import commit, temp_dir

    before = written()
    write_json(tmp_path / "r.json", {})  # atomic_write
    write_safetensors(tmp_path / "t.safetensors", {"x": np.zeros(2, np.float32)})  # temp_file + commit
    commit(temp_dir(str(tmp_path)), str(tmp_path / "folder"))  # a whole folder (save_pretrained)
    assert os.listdir(tmp_path) == [] and written() == before  # nothing in place, no temporary left
    job.index = 0
    write_json(tmp_path / "r.json", {})
    assert os.listdir(tmp_path) == ["r.json"] and len(written()) == len(before) + 1
