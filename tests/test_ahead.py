"""Compiles ahead (``jaxsteer.ahead``): a program compiled in the background from a later call's shapes is the
one that call runs — the jitted function's cache holds one entry after the compile ahead and still one after
the call — and the call's results are those of a call that compiled for itself.

Lowering a ``Steering`` argument ahead rebuilds it from JAX's ``ArgInfo`` placeholders, which the test suite's
annotation checks (``conftest.py``) refuse: the steered cases run in a child pytest with the checks off
(``test_steered_cases_without_annotation_checks``)."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys

import numpy as np
import pytest
from compile_counter import compiled_names
from tiny_checkpoint import left_padded_prompts

import jaxsteer
from jaxsteer import ahead
from jaxsteer.config import tiny
from jaxsteer.model import decode
from jaxsteer.steering.sweep import pair_grid

NEW = 5
PROGRAMS = ("generate_core", "layer_copy", "_prefix", "_tail", "layer_activations")


@pytest.fixture(scope="module")
def model(model_factory):
    return model_factory(tiny(sliding_window=3), seed=4, norm_std=0.3)


@pytest.fixture(autouse=True)
def fresh_caches():
    import jax

    jax.clear_caches()
    ahead._pending.clear()
    yield


def finish_all():
    for future in list(ahead._pending.values()):
        assert future.result() is True  # compiled without an error


@contextlib.contextmanager
def compiles_of(name: str):
    """``n()``: how many programs of the function ``name`` the block compiled (in any thread)."""
    with compiled_names() as names:
        yield lambda: sum(n in (name, f"jit({name})") for n in names())


UNTYPED = os.environ.get("JAXSTEER_TYPECHECK", "1") == "0"
untyped = pytest.mark.skipif(not UNTYPED, reason="run by test_steered_cases_without_annotation_checks")


def test_steered_cases_without_annotation_checks():
    if UNTYPED:
        pytest.skip("this is the child run")
    env = {**os.environ, "JAXSTEER_TYPECHECK": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "generate_runs or grid or run_experiment", __file__],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-500:]


@pytest.mark.parametrize("steered", [False, pytest.param(True, marks=untyped)])
@pytest.mark.parametrize("layout", ["unrolled", "scan", "moved"])
def test_generate_runs_the_program_compiled_ahead(model, layout, steered):
    ids, mask = left_padded_prompts(3, (3, 6), high=128, padded_row=1, pad=2)
    vector = {1: np.ones(model.config.hidden_size)}
    steer = jaxsteer.Steering.from_layers(model.config, vector, gamma=2.0) if steered else None
    with compiles_of("generate_core") as ahead_compiles:
        assert decode.compile_generate_ahead(model, 3, 6, NEW, steer, decode_layout=layout, eos_token_id=-1) == 1
        finish_all()
    assert ahead_compiles() == 1
    with compiles_of("generate_core") as n:
        tokens = jaxsteer.generate(model, ids, NEW, mask, steering=steer, decode_layout=layout, eos_token_id=-1)
    assert n() == 0  # the call found the program compiled ahead
    import jax

    jax.clear_caches()
    with compiles_of("generate_core") as n:
        again = jaxsteer.generate(model, ids, NEW, mask, steering=steer, decode_layout=layout, eos_token_id=-1)
    assert n() == 1  # without it, the call compiles
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(again))


@untyped
def test_a_plan_grid_is_compiled_ahead_from_other_values_of_the_same_structure(model):
    """The plans' values are arguments; which plans agree where (the plan tree) is the program's shape."""
    rng = np.random.RandomState(0)
    d = model.config.hidden_size
    layers = model.config.num_layers
    grid = lambda: pair_grid(rng.randn(layers, d), [1], [2.0], rng.randn(layers, d), [3, 4], [0.0, 1.0])  # noqa: E731
    ids, mask = left_padded_prompts(5, (2, 7), high=128, padded_row=0, pad=3)
    assert decode.compile_generate_ahead(model, 2, 7, NEW, plans=grid(), eos_token_id=-1) == 1
    finish_all()
    with compiles_of("generate_core") as n:
        decode.generate(model, ids, NEW, mask, plans=grid(), eos_token_id=-1)
    assert n() == 0


def test_another_shape_is_another_program(model):
    ids, mask = left_padded_prompts(3, (3, 6), high=128, padded_row=1, pad=2)
    decode.compile_generate_ahead(model, 3, 8, NEW)  # wider than the call's prompts
    finish_all()
    with compiles_of("generate_core") as n:
        jaxsteer.generate(model, ids, NEW, mask)
    assert n() == 1


def test_a_failing_compile_ahead_is_reported_and_the_call_still_runs(model, capsys):
    import jax

    @jax.jit
    def broken(x):
        raise RuntimeError("no such program")

    future = ahead.in_background(broken, np.zeros(3, np.float32))
    assert future.result() is False
    assert "compiling broken ahead failed (RuntimeError: no such program)" in capsys.readouterr().err
    assert ahead.in_background(broken, np.zeros(3, np.float32)) is future  # the same signature is not redone


def test_enabled_follows_the_environment(monkeypatch):
    monkeypatch.setenv("JAXSTEER_COMPILE_AHEAD", "1")
    assert ahead.enabled()
    monkeypatch.setenv("JAXSTEER_COMPILE_AHEAD", "off")
    assert not ahead.enabled()
    monkeypatch.delenv("JAXSTEER_COMPILE_AHEAD")
    assert not ahead.enabled()  # the tests run on a CPU: off by default there


def test_a_sweep_runs_the_prefix_and_tails_compiled_ahead(model, monkeypatch):
    from jaxsteer.scoring import option_logprob_fn
    from jaxsteer.steering.sweep import compile_grid_ahead, layer_gamma_grid, run_grid

    rng = np.random.RandomState(2)
    vectors = rng.randn(model.config.num_layers, model.config.hidden_size).astype(np.float32)
    grid = layer_gamma_grid(vectors, [2, 3], [0.0, 1.5, 3.0])
    score = option_logprob_fn((5, 6, 7))
    ids, mask = left_padded_prompts(6, (4, 9), high=128, padded_row=2, pad=4)
    assert compile_grid_ahead(model, 4, 9, grid, score, chunk_size=4) == 2  # the prefix, one tail for both chunks
    finish_all()
    with compiles_of("_prefix") as prefix, compiles_of("_tail") as tail:
        got = run_grid(model, ids, mask, grid, score, chunk_size=4)
    assert (prefix(), tail()) == (0, 0)
    import jax

    jax.clear_caches()
    with compiles_of("_tail") as tail:
        want = run_grid(model, ids, mask, grid, score, chunk_size=4)
    assert tail() == 1  # two chunks of 4 points, one program
    np.testing.assert_array_equal(got, want)


def test_planned_compiles_are_off_on_a_cpu_unless_asked(monkeypatch):
    ran = []
    monkeypatch.delenv("JAXSTEER_COMPILE_AHEAD", raising=False)
    ahead.plan(lambda: ran.append("default"))
    monkeypatch.setenv("JAXSTEER_COMPILE_AHEAD", "1")
    ahead.plan(lambda: ran.append("asked"))
    assert ran == ["asked"]


def test_a_failing_plan_is_reported_and_the_run_goes_on(monkeypatch, capsys):
    monkeypatch.setenv("JAXSTEER_COMPILE_AHEAD", "1")
    ahead.plan(lambda: 1 / 0)
    assert "planning compiles ahead failed (ZeroDivisionError" in capsys.readouterr().err


@untyped
def test_run_experiment_compiles_selection_and_evaluation_ahead(tmp_path, monkeypatch):
    """With compiling ahead on, the experiment's main thread compiles none of the extraction's, the
    selection's and the test evaluation's model programs (the stages are made to wait for the background
    here, which on a GPU runs beside them), and the results equal a run without it."""
    import dataclasses
    import threading

    from tiny_checkpoint import FIXTURES, build_tiny_folder

    from jaxsteer.study import pipeline
    from jaxsteer.study.experiment import ExperimentConfig

    folder = build_tiny_folder(str(tmp_path / "tiny"), FIXTURES)
    exp = ExperimentConfig(model=folder, dtype="float32", data=FIXTURES, languages=("zh",), allow_small=True,
                           loc_gammas=(0.0, 1.0), max_new_tokens=3, batch_size=8)  # fmt: skip
    default = pipeline.Measures()

    def after_background(fn):
        def wrapped(*args, **kwargs):
            ahead.wait_all()
            return fn(*args, **kwargs)

        return wrapped

    waiting = pipeline.Measures(extract=after_background(default.extract),
                                score_loc=after_background(default.score_loc),
                                evaluate=after_background(default.evaluate))  # fmt: skip
    runs, main = {}, {}
    for flag in ("0", "1"):
        monkeypatch.setenv("JAXSTEER_COMPILE_AHEAD", flag)
        import jax

        jax.clear_caches()
        ahead._pending.clear()
        out = str(tmp_path / f"ahead{flag}")
        with compiled_names(threading.main_thread().name) as names:
            res = pipeline.run_experiment(dataclasses.replace(exp, out=out), {"base": folder}, ("base",), out,
                                          progress=False, measures=waiting)  # fmt: skip
        runs[flag] = {k: (v.gmmlu, v.blend) for k, v in res["results"].items()}
        main[flag] = [n for n in names() if n.split("(")[-1].rstrip(")") in PROGRAMS]
    assert runs["1"] == runs["0"]
    assert len(main["0"]) >= 4  # the extraction read, the selection grid, the evaluation's grid and sweep
    assert main["1"] == [], main["1"]


def test_never_in_a_multi_process_job(monkeypatch, job):
    """Planning a compile ahead agrees on sizes across processes (a collective): no background thread may."""
    monkeypatch.setenv("JAXSTEER_COMPILE_AHEAD", "1")
    assert not ahead.enabled()
    ran = []
    ahead.plan(lambda: ran.append(1))
    assert not ran


def test_a_call_does_not_wait_behind_the_queue_and_cancel_takes_queued_compiles_back():
    """A compile still queued (every worker busy) is taken back by the call that needs it, which compiles
    for itself; ``cancel`` takes back what is queued, so that a run that ends never waits for it at exit."""
    import threading

    import jax

    release = threading.Event()
    pool = ahead._executor()
    for _ in range(pool._max_workers):
        pool.submit(release.wait, 30)  # every worker busy

    @jax.jit
    def double(x):
        return 2 * x

    x = np.ones(5, np.float32)
    queued = ahead.in_background(double, x)
    ahead.wait_for(double, x)  # returns at once: the queued compile is taken back
    assert queued.cancelled() and not ahead._pending
    other = ahead.in_background(double, np.ones(6, np.float32))
    ahead.cancel()
    assert other.cancelled() and not ahead._pending and ahead._pool is None
    release.set()
    np.testing.assert_array_equal(ahead.call(functools.partial(double, x)), 2 * x)


def test_a_plain_evaluation_compiles_its_scoring_widths_and_generation_ahead(tmp_path, monkeypatch):
    """``evaluate`` (one method: the plain model, a CLA baseline) compiles every planned scoring width and its
    BLEnD generation ahead: with the stages made to wait for the background, its main thread compiles neither."""
    import threading

    from tiny_checkpoint import FIXTURES, build_tiny_folder

    from jaxsteer.study import evaluate as ev
    from jaxsteer.study.experiment import Benchmarks, ExperimentConfig

    folder = build_tiny_folder(str(tmp_path / "tiny"), FIXTURES)
    model = jaxsteer.load_pretrained(folder, dtype="float32")
    bench = Benchmarks(ExperimentConfig(model=folder, dtype="float32", data=FIXTURES, languages=("zh",),
                                        allow_small=True, max_new_tokens=3, batch_size=8))  # fmt: skip
    for name in ("gmmlu_accuracy", "blend_accuracy"):
        real = getattr(ev, name)
        monkeypatch.setattr(ev, name, lambda *a, _real=real, **k: (ahead.wait_all(), _real(*a, **k))[1])
    accuracies = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("JAXSTEER_COMPILE_AHEAD", flag)
        import jax

        jax.clear_caches()
        ahead._pending.clear()
        with compiled_names(threading.main_thread().name) as names:
            result = ev.evaluate(model, bench, "base", None, "test", progress=False)
        accuracies[flag] = (result.gmmlu, result.blend)
        programs = [n for n in names() if n.split("(")[-1].rstrip(")") in ("forward_core", "generate_core")]
        assert (programs != []) if flag == "0" else (programs == []), (flag, programs)
    assert accuracies["0"] == accuracies["1"]
