"""``jaxsteer fixtures build DIR`` (jaxsteer/fixtures.py): the README's tiny checkpoint from the runtime install.

The command runs in a fresh interpreter with torch and pytest hidden — what ``pip install -e .`` gives —
and must write the very checkpoint the test session builds (same weights, same tokenizer).
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

from tiny_checkpoint import FIXTURES, tiny_folder  # noqa: F401

from jaxsteer.cli import main

RUNTIME_ONLY = "import sys; sys.modules['torch'] = sys.modules['pytest'] = sys.modules['beartype'] = None"


def test_build_needs_only_the_runtime_install_and_writes_the_test_checkpoint(tiny_folder, tmp_path):  # noqa: F811
    code = f"{RUNTIME_ONLY}; from jaxsteer.cli import main; sys.exit(main(['fixtures', 'build', {str(tmp_path)!r}]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    built = tmp_path / "tiny"
    assert f"wrote {built}" in done.stdout
    names = sorted(os.listdir(tiny_folder))
    assert sorted(os.listdir(built)) == names and "model.safetensors" in names and "tokenizer.json" in names
    _, mismatch, errors = filecmp.cmpfiles(tiny_folder, built, names, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


def test_build_without_fixture_data_is_one_line(tmp_path, capsys):
    empty = tmp_path / "no_data"
    empty.mkdir()
    out = tmp_path / "out"
    assert main(["fixtures", "build", str(out), "--data", str(empty)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxsteer fixtures: error: no fixture data in")
    assert not out.exists()


def test_fixtures_dir_is_the_repository_data():
    from jaxsteer.fixtures import FIXTURE_DATA

    assert os.path.samefile(FIXTURE_DATA, FIXTURES)


def test_build_never_replaces_what_it_did_not_write(tmp_path, capsys):
    """A training run's folder holds tokenizer/ too (train --resume reads it back): refused unless --overwrite;
    DIR a file: one line."""
    run = tmp_path / "train_run"
    (run / "tokenizer").mkdir(parents=True)
    (run / "tokenizer" / "tokenizer.json").write_text("{}")
    assert main(["fixtures", "build", str(run)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "already holds tokenizer not written by `jaxsteer fixtures build`" in lines[0]
    assert (run / "tokenizer" / "tokenizer.json").read_text() == "{}" and not (run / "tiny").exists()
    assert main(["fixtures", "build", str(run), "--overwrite"]) == 0  # the run's tokenizer moved aside, not lost
    (aside,) = [p for p in run.iterdir() if p.name.startswith("replaced-")]
    assert (aside / "tokenizer" / "tokenizer.json").read_text() == "{}" and (run / "tiny").is_dir()
    assert main(["fixtures", "build", str(run)]) == 0  # a build's own outputs: rebuilt without a flag
    capsys.readouterr()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["fixtures", "build", str(afile)]) == 2
    assert "DIR" in capsys.readouterr().err and afile.read_text() == "x"
