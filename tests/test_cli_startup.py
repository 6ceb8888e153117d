"""Start-up of the ``jaxsteer`` command line: ``--help`` is user text and imports no JAX (the heavy modules
load in the command that needs them), and transformers' "PyTorch was not found" notice is silenced.

Each check runs in a fresh interpreter: this test process has imported JAX long ago.
"""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "transformers", "tokenizers", "torch", "numpy", "matplotlib")


def python(code: str) -> subprocess.CompletedProcess:
    # a fresh environment: an in-process ``main`` of another test in this worker may have set the variable
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_NO_ADVISORY_WARNINGS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_help_imports_no_heavy_module_and_shows_user_text():
    probe = f"""
import contextlib, io, sys
from jaxsteer.cli import main
for argv in (["--help"], ["--version"], *([c, "--help"] for c in __import__("jaxsteer.cli").cli.COMMANDS)):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main(argv)
        except SystemExit:
            pass
    if argv == ["--help"]:
        print(out.getvalue())
print("LOADED", sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    done = python(probe)
    assert done.returncode == 0, done.stderr
    text, loaded = done.stdout.rsplit("LOADED", 1)
    assert loaded.strip() == "[]", f"--help imported {loaded.strip()}"
    assert "Steer and align multilingual Gemma-3 models" in text and "jaxsteer demo" in text
    assert "``" not in text and "jaxsteer.commands" not in text  # not the module docstring
    for command in ("demo", "fixtures", "run", "train", "plane"):
        assert f"    {command}" in text


def test_the_pytorch_notice_of_transformers_is_silenced(tmp_path):
    """Without torch (hidden here, absent in a runtime install) transformers logs a notice on import; a
    command's process must not show it. Without ``main`` the same probe shows it (the test can fail)."""
    (tmp_path / "config.json").write_text("{}")
    probe = """
import sys
sys.modules["torch"] = None  # what `pip install -e .` gives: no torch
{main}
import transformers
"""
    shown = python(probe.format(main=""))
    assert "PyTorch was not found" in shown.stderr, shown.stderr  # the notice exists in this environment
    silenced = python(probe.format(main=f"from jaxsteer.cli import main; main(['info', {str(tmp_path)!r}])"))
    assert "PyTorch was not found" not in silenced.stderr, silenced.stderr
