"""Ctrl-C on the command line: 130 and one honest line every time — no segfault at exit, no lost interrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tiny_checkpoint import FIXTURES, tiny_folder  # noqa: F401

from jaxsteer import interrupt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWALLOW = """
import gc, os, signal, sys, time
from jaxsteer import interrupt
if sys.argv[1] == "install":
    interrupt.install()
fired = []
def callback(phase, info):  # like JAX's _xla_gc_callback: Python drops exceptions raised in here
    if phase == "start" and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs at one of these bytecodes, inside the callback
            pass
gc.callbacks.append(callback)
try:
    gc.collect()
    time.sleep(5)
    print("lost")
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("handler,expected", [("python", "lost"), ("install", "interrupted")])
def test_a_ctrl_c_inside_a_gc_callback_is_not_lost(handler, expected):
    """With Python's handler the KeyboardInterrupt is raised inside the callback and dropped (the run went on);
    jaxsteer's sends it again a moment later, outside."""
    done = subprocess.run([sys.executable, "-c", SWALLOW, handler], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == expected, done.stderr


def test_describe_says_what_was_written(tmp_path, monkeypatch):
    from jaxsteer import results

    assert interrupt.describe(interrupt.Interrupted("the run lists 3 stages")) == "the run lists 3 stages"
    monkeypatch.setattr(results, "_WRITTEN", [])
    assert interrupt.describe(KeyboardInterrupt()) == "nothing was written"
    path = results.write_json(tmp_path / "a.json", {})
    assert interrupt.describe(KeyboardInterrupt()) == (
        f"1 file(s) had been written, each complete (the last: {os.path.abspath(path)}); nothing is half written"
    )


def test_main_called_in_process_returns_130_and_keeps_the_interpreter(monkeypatch, capsys):
    from jaxsteer.cli import main
    from jaxsteer.commands import info

    def cut(args):
        raise interrupt.Interrupted("the folder lists 2 stages")

    monkeypatch.setattr(info, "run", cut)
    assert main(["info", "x"]) == 130  # no os._exit: a caller's interpreter is not ended
    assert capsys.readouterr().err == "jaxsteer info: interrupted; the folder lists 2 stages\n"


DELAYS = (0.0, 0.4, 1.0, 2.0, 3.5)  # seconds after the first progress line


@pytest.mark.slow
def test_ctrl_c_during_a_run_exits_130_cleanly_every_time(tiny_folder, tmp_path):  # noqa: F811
    """`jaxsteer run` on the tiny model, SIGINT at five points of its device work (compiling, scoring,
    generating): 2 runs in 8 used to segfault right after the message, as interpreter teardown freed the XLA
    client under a compiling thread. Each run must exit 130 with one message, leaving a consistent folder."""
    config = os.path.join(ROOT, "configs", "experiments", "fixtures_tiny.yaml")
    for trial, delay in enumerate(DELAYS):
        out = tmp_path / f"run{trial}"
        command = [sys.executable, "-m", "jaxsteer.cli", "run", "--config", config, "--set", f"data={FIXTURES}"]
        command += ["--set", f"models={{base: {tiny_folder}}}", "--lang", "zh", "--quiet", "--out", str(out)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        first = proc.stdout.readline()  # "[base] extracting EN and LOC vectors on Dev1 (zh)": device work starts
        time.sleep(delay)
        if proc.poll() is not None and delay == max(DELAYS):  # a fast machine finished first: nothing to interrupt
            assert proc.returncode == 0, proc.communicate()[1][-3000:]
            continue
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        assert first.startswith("[base] extracting"), err
        assert proc.returncode == 130, f"trial {trial} ({delay} s): exit {proc.returncode}\n{err[-3000:]}"
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("jaxsteer run: interrupted; "), err[-3000:]
        assert "Traceback" not in err and "Fatal Python error" not in err, err[-3000:]
        with open(out / "manifest.json", encoding="utf-8") as f:
            record = json.load(f)  # written before the first stage: the folder says it is incomplete
        for stage in record["stages"].values():
            assert all(os.path.isfile(out / name) for name in stage["files"]), stage
        assert f"lists {len(record['stages'])} of {len(record['planned'])} stage(s)" in lines[-1]
        leftovers = [n for _, _, names in os.walk(out) for n in names if n.startswith(".tmp-")]
        assert leftovers == [], leftovers


def test_an_interrupt_wrapped_by_an_extension_is_still_an_interrupt():
    """A SIGINT raised inside a C++ → Python callback comes back as another exception type whose context is
    the ``KeyboardInterrupt``; it is still an interrupt (exit 130), any other error is not."""
    from jaxsteer import interrupt

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("wrapped by the extension") from inner
    except RuntimeError as e:
        assert isinstance(interrupt.cause(e), KeyboardInterrupt)
    assert interrupt.cause(ValueError("plain")) is None


def test_deferred_holds_a_ctrl_c_until_the_block_ends():
    import signal

    from jaxsteer.interrupt import deferred

    done, handler = [], signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), deferred():
            signal.raise_signal(signal.SIGINT)
            done.append("after the signal")
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, handler)
