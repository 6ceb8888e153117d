"""The ``jaxsteer`` CLI in-process (``jaxsteer.cli.main``) on the tiny checkpoint and the fixture data.

One language (zh, ``allow_small``), batch 8 and 2 new tokens throughout, so every command compiles the
same few programs once per session. Outputs are checked against the Python API, not only for existence.
Bad inputs must exit 2 with ONE stderr line ``jaxsteer CMD: error: ...`` and leave no output folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re

import jax
import numpy as np
import pytest
from tiny_checkpoint import FIXTURES, tiny_config, tiny_folder, tiny_model  # noqa: F401

from jaxsteer.cli import main
from jaxsteer.steering.vectors_io import VectorSet, load_vectors, save_vectors
from jaxsteer.study.experiment import Benchmarks, ExperimentConfig

jax.config.update("jax_default_matmul_precision", "highest")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ["--set", "allow_small=true", "--set", "batch_size=8", "--set", "max_new_tokens=2"]
LETTER_GAMMA = 50.0


def common(folder: str, out) -> list[str]:
    return [
        "--model",
        folder,
        "--dtype",
        "float32",
        "--data",
        FIXTURES,
        "--lang",
        "zh",
        *SETTINGS,
        "--quiet",
        "--out",
        str(out),
    ]


def call(*args) -> tuple[int, str, str]:
    """``main(args)`` with stdout/stderr captured (usable from module-scoped fixtures, unlike capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def ok(*args) -> str:
    rc, out, err = call(*args)
    assert rc == 0, f"jaxsteer {args[0]} exited {rc}: {err}"
    return out


def bench() -> Benchmarks:
    return Benchmarks(
        ExperimentConfig(data=FIXTURES, languages=("zh",), allow_small=True, batch_size=8, max_new_tokens=2)
    )


def nonempty(path) -> bool:
    return os.path.isfile(path) and os.path.getsize(path) > 0


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_csv(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def md_row(path, method: str) -> list[float]:
    """The numbers of ``method``'s row in a Δ Markdown table."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == method:
            return [float(c) for c in cells[1:]]
    raise AssertionError(f"no row {method!r} in {path}")


def accuracy(folder, method: str, bench_name: str) -> dict[str, float]:
    return read_json(os.path.join(folder, f"{method}.{bench_name}.json"))["accuracy"]


# --- module state: vectors and evaluations shared by several tests ------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def vectors(tiny_folder, work):  # noqa: F811
    out = work / "vectors"
    ok("extract", *common(tiny_folder, out), "--kind", "en")
    ok("extract", *common(tiny_folder, out), "--kind", "loc")
    return {"en": out / "en_zh.safetensors", "loc": out / "loc_zh.safetensors"}


@pytest.fixture(scope="module")
def letter_vector(tiny_model, work):  # noqa: F811
    """The unit embedding of " C" at every block: a large γ at the last block makes the model answer C."""
    cfg = tiny_model.config
    tid = tiny_model.tokenizer(" C", add_special_tokens=False)["input_ids"][0]
    row = np.asarray(tiny_model.params["embed"][tid], np.float32)
    v = np.tile(row / np.linalg.norm(row), (cfg.num_layers, 1)).astype(np.float32)
    return save_vectors(work / "letter_c.safetensors", VectorSet.from_config(cfg, v, kind="EN"))


@pytest.fixture(scope="module")
def evals(tiny_folder, work, vectors, letter_vector):  # noqa: F811
    out = work / "eval"
    ok("eval", *common(tiny_folder, out))
    steer = [f"{vectors['en']}:2:2.0", f"{letter_vector}:5:{LETTER_GAMMA}"]
    ok("eval", *common(tiny_folder, out), "--method", "steered", *sum((["--steer", s] for s in steer), []))
    return out


# --- info / extract / sweep / analyze ---------------------------------------------------------------
def test_info_reads_the_config(tiny_folder, capsys):  # noqa: F811
    from jaxsteer.config import GemmaConfig

    assert main(["info", tiny_folder]) == 0
    info = json.loads(capsys.readouterr().out)
    cfg = GemmaConfig.from_hf(tiny_folder)
    assert info["num_layers"] == 6 and info["hidden_size"] == 32 and info["weight_files"] == 1
    assert info["config_hash"] == cfg.config_hash() and info["params"] == cfg.num_params()


def test_extract_writes_vectors_equal_to_the_python_api(vectors, tiny_model):  # noqa: F811
    from jaxsteer.steering.extract import TokenPairs, extract

    b = bench()
    for kind, pairs in (("EN", b.en_pairs("zh", "dev1")), ("LOC", b.loc_pairs("zh", "dev1"))):
        vset = load_vectors(vectors[kind.lower()])
        assert vset.vectors.shape == (6, 32)
        meta = vset.meta
        assert (meta.kind, meta.languages, meta.method, meta.read_position) == (kind, ("zh",), "mean_diff", "last")
        assert meta.num_pairs == len(pairs) > 0 and meta.config_hash == tiny_model.config.config_hash()
        tp = TokenPairs.from_texts(tiny_model.tokenizer, [p for p, _ in pairs], [n for _, n in pairs])
        ref = extract(tiny_model, tp, batch_size=8, progress=False).vectors
        np.testing.assert_allclose(vset.vectors, ref, rtol=1e-5, atol=1e-6)


def test_sweep_writes_csv_heatmap_and_matches_the_evaluator(tiny_folder, tiny_model, vectors, letter_vector, work):  # noqa: F811
    """2 layers × 2 γ of the extracted EN vector, then of the " C" vector (same shapes: one compiled tail).

    Every grid point's accuracy equals ``gmmlu_accuracy`` with that steering (the test split: the
    evaluator's programs are already compiled by the eval fixture).
    """
    from jaxsteer.study.evaluate import gmmlu_accuracy
    from jaxsteer.study.surgical import combined_steering

    b = bench()
    # γ = 0 points equal the plain model: above block 1, one group runs for them and one per other point
    for name, path, layers, gammas, passes in (
        ("en", vectors["en"], (1, 3), (0.0, 2.0), 1 + 2 * 2 + 3 * 3),
        ("c", letter_vector, (1, 5), (0.0, 50.0), 1 + 2 * 4 + 3 * 1),
    ):
        out = work / f"sweep_{name}"
        printed = ok(
            "sweep",
            *common(tiny_folder, out),
            "--vectors",
            path,
            "--layers",
            ",".join(map(str, layers)),
            "--gammas",
            ",".join(map(str, gammas)),
            "--part",
            "test",
        )
        rows = read_csv(out / "sweep.csv")
        assert [(int(r["layer"]), float(r["gamma"])) for r in rows] == [(la, g) for la in layers for g in gammas]
        assert {r["lang"] for r in rows} == {"zh"}
        assert nonempty(out / "sweep_heatmap.png")
        summary = read_json(out / "sweep.json")
        assert summary["layer_passes"] == passes and summary["part"] == "test"
        v = load_vectors(path).vectors
        for r in rows:
            steer = combined_steering(tiny_model.config, [(v, int(r["layer"]), float(r["gamma"]))])
            ref = gmmlu_accuracy(tiny_model, b, "zh", "test", steer, progress=False)
            assert float(r["gmmlu_accuracy"]) == pytest.approx(ref), r
        # the best point by the library's rule (ties → smaller γ, then lower layer), with its n and its ties
        best, top = summary["best"], max(float(r["gmmlu_accuracy"]) for r in rows)
        tied = [(int(r["layer"]), float(r["gamma"])) for r in rows if float(r["gmmlu_accuracy"]) == top]
        assert best["metric"] == top and [(t["layer"], t["gamma"]) for t in best["ties"]] == tied
        assert (best["layer"], best["gamma"]) == min(tied, key=lambda p: (p[1], p[0]))
        assert best["tie"] == (len(tied) > 1) and best["n"] == len(b.gmmlu("zh", "test"))
        assert {int(r["n"]) for r in rows} == {best["n"]}
        assert f"n={best['n']} items" in printed and ("a tie with" in printed) == best["tie"]
    assert float(rows[-1]["gmmlu_accuracy"]) > float(rows[0]["gmmlu_accuracy"])  # γ=50 of " C" at block 5 helps


def test_blend_sweep_decodes_every_point_like_separate_evaluations(tiny_folder, tiny_model, letter_vector, work):  # noqa: F811
    """``--bench blend``: all grid points in one generation call per batch; each point's accuracy equals
    ``blend_accuracy`` run alone with that steering."""
    from jaxsteer.study.evaluate import blend_accuracy
    from jaxsteer.study.surgical import combined_steering

    b = bench()
    out = work / "sweep_blend"
    args = ["--vectors", letter_vector, "--layers", "1,4", "--gammas", "0,50", "--part", "test", "--bench", "blend"]
    ok("sweep", *common(tiny_folder, out), *args)
    rows = read_csv(out / "sweep.csv")
    assert [(int(r["layer"]), float(r["gamma"])) for r in rows] == [(1, 0.0), (1, 50.0), (4, 0.0), (4, 50.0)]
    assert read_json(out / "sweep.json")["bench"] == "blend"
    v = load_vectors(letter_vector).vectors
    refs = []
    for r in rows:
        steer = combined_steering(tiny_model.config, [(v, int(r["layer"]), float(r["gamma"]))])
        refs.append(blend_accuracy(tiny_model, b, "zh", "test", steer, progress=False))
        assert float(r["blend_accuracy"]) == pytest.approx(refs[-1]), r
        assert int(r["n"]) == len(b.blend("zh", "test"))


def test_analyze_writes_sper_table_and_plots(vectors, work):
    from jaxsteer.steering import analysis

    out = work / "analyze"
    ok("analyze", "--a", vectors["en"], "--b", vectors["loc"], "--out", out)
    rows = read_csv(out / "sper.csv")
    a, b = load_vectors(vectors["en"]).vectors, load_vectors(vectors["loc"]).vectors
    assert [int(r["layer"]) for r in rows] == list(range(6))
    np.testing.assert_allclose([float(r["sper_degrees"]) for r in rows], analysis.sper_degrees(a, b), atol=1e-4)
    np.testing.assert_allclose([float(r["norm_a"]) for r in rows], np.linalg.norm(a, axis=-1), rtol=1e-5)
    assert nonempty(out / "sper.png") and nonempty(out / "norms.png")


# --- eval / plane -----------------------------------------------------------------------------------
def test_eval_result_files_match_the_python_api(evals, tiny_model, vectors, letter_vector):  # noqa: F811
    from jaxsteer.study.evaluate import gmmlu_accuracy
    from jaxsteer.study.surgical import combined_steering

    for name in ("base", "steered"):
        for bench_name in ("gmmlu", "blend"):
            data = read_json(evals / f"{name}.{bench_name}.json")
            assert data["method"] == name and set(data["accuracy"]) == {"zh"}
            assert data["config_hash"] == tiny_model.config.config_hash()
        assert nonempty(evals / f"{name}.csv") and nonempty(evals / f"{name}.responses.json")
    parts = [(load_vectors(vectors["en"]).vectors, 2, 2.0), (load_vectors(letter_vector).vectors, 5, LETTER_GAMMA)]
    steer = combined_steering(tiny_model.config, parts)
    b = bench()
    assert accuracy(evals, "base", "gmmlu")["zh"] == pytest.approx(
        gmmlu_accuracy(tiny_model, b, "zh", "test", None, False)
    )
    assert accuracy(evals, "steered", "gmmlu")["zh"] == pytest.approx(
        gmmlu_accuracy(tiny_model, b, "zh", "test", steer, False)
    )
    # the " C" vector answers C everywhere: the steered accuracy is the share of C answers
    answers = [q.answer for q in b.gmmlu("zh", "test")]
    assert accuracy(evals, "steered", "gmmlu")["zh"] == pytest.approx(100 * np.mean(np.array(answers) == 2))
    # the items behind each accuracy (a binomial s.e. needs them): every question, and BLEnD's scored ones
    from jaxsteer.study import metrics

    assert read_json(evals / "steered.gmmlu.json")["n"] == {"zh": len(answers)}
    responses = read_json(evals / "steered.responses.json")["zh"]
    scored = metrics.blend_accuracy(responses, [it.question for it in b.blend("zh", "test")], "jaxsteer")
    assert read_json(evals / "steered.blend.json")["n"] == {"zh": scored.n_scored}
    assert scored.n_scored + scored.n_skipped == len(b.blend("zh", "test"))
    assert accuracy(evals, "steered", "blend")["zh"] == pytest.approx(scored.accuracy)  # recomputed by hand


def test_plane_delta_table_equals_result_file_differences(evals, work):
    out = work / "plane"
    ok("plane", evals, "--out", out)
    for bench_name in ("gmmlu", "blend"):
        delta = accuracy(evals, "steered", bench_name)["zh"] - accuracy(evals, "base", bench_name)["zh"]
        cells = md_row(out / f"delta_{bench_name}.md", "steered")
        assert cells == [round(delta, 2), round(delta, 2)]  # zh, mean over the one language
        rows = read_csv(out / f"delta_{bench_name}.csv")
        assert [r["method"] for r in rows] == ["steered"] and float(rows[0]["zh"]) == pytest.approx(delta, abs=5e-3)
    assert md_row(out / "delta_gmmlu.md", "steered")[0] != 0  # the Δ is not vacuous
    assert nonempty(out / "plane.png") and nonempty(out / "plane.svg")
    point = read_csv(out / "plane.csv")[0]
    assert point["method"] == "steered" and point["quadrant"] in ("desirable", "localization_only")
    record = read_json(out / "plane.json")  # what was compared, and who compared it
    assert record["base"] == "base" and record["languages"] == ["zh"]
    assert record["inputs"]["gmmlu"]["steered"] == [{"file": str(evals / "steered.gmmlu.json"), "seed": 0}]
    assert record["provenance"]["command"] == "jaxsteer plane" and "device" not in record["provenance"]


def test_plane_with_a_method_lacking_a_benchmark_writes_nothing(evals, work, capsys):
    """An eval cut short between its two result files: the Δ tables were written before the check."""
    import shutil

    half = work / "half_eval"
    shutil.copytree(evals, half)
    for bench_name in ("gmmlu", "blend"):  # a complete second method, so that the plane has a point to draw
        data = read_json(half / f"steered.{bench_name}.json")
        (half / f"other.{bench_name}.json").write_text(json.dumps({**data, "method": "other"}))
    (half / "steered.blend.json").unlink()
    out = work / "plane_half"
    assert_user_error(capsys, ["plane", half, "--out", out], out, r"steered lack a GMMLU or a BLEnD result")


def test_steer_without_selection_writes_the_plan(tiny_folder, vectors, work):  # noqa: F811
    out = work / "steer"
    ok(
        "steer",
        *common(tiny_folder, out),
        "--set",
        "loc_gammas=[0,1]",
        "--en",
        vectors["en"],
        "--loc",
        vectors["loc"],
        "--no-select",
    )
    plan = read_json(out / "plan.json")["plans"]["zh"]
    assert (plan["en_layer"], plan["en_gamma"], plan["loc_layer"], plan["loc_gamma"]) == (2, 2.0, 4, 1.0)


def test_steer_overwrite_sets_aside_the_results_of_the_plan_it_replaces(tiny_folder, vectors, work, capsys):  # noqa: F811
    out = work / "steer_twice"
    base = ["steer", *common(tiny_folder, out), "--en", vectors["en"], "--no-select", "--evaluate"]
    ok(*base)
    assert (out / "EN.gmmlu.json").is_file() and read_json(out / "plan.json")["loc"] is None
    assert_refused(capsys, [*base, "--loc", vectors["loc"]], r"already holds plan\.json.*--overwrite")
    ok(*base, "--loc", vectors["loc"], "--overwrite")
    stages = read_json(out / "manifest.json")["stages"]
    assert list(stages) == ["steer:SUR"] and "SUR.gmmlu.json" in stages["steer:SUR"]["files"]
    assert not (out / "EN.gmmlu.json").exists()  # the EN-only plan's results went aside with its plan.json
    (aside,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert (aside / "EN.gmmlu.json").is_file() and read_json(aside / "plan.json")["loc"] is None


# --- bad inputs: exit 2, one line, nothing written ----------------------------------------------------
@pytest.fixture(scope="module")
def wrong_width(work):
    cfg = tiny_config(1500, hidden_size=16, intermediate_size=32)
    path = work / "wrong_width.safetensors"
    return save_vectors(path, VectorSet.from_config(cfg, np.ones((cfg.num_layers, 16), np.float32), kind="EN"))


def assert_user_error(capsys, argv, out, needle: str):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"jaxsteer {argv[0]}: error: "), lines[0]
    assert re.search(needle, lines[0]), lines[0]
    assert not os.path.exists(out), f"{out} was written"


def test_missing_model_folder(tiny_folder, work, capsys):  # noqa: F811
    out = work / "bad_missing"
    assert_user_error(capsys, ["eval", *common(str(work / "no_such_model"), out)], out, "no checkpoint folder")
    assert_user_error(capsys, ["info", str(work / "no_such_model")], out, "no checkpoint folder")


def test_unknown_config_key(tiny_folder, work, capsys):  # noqa: F811
    out = work / "bad_key"
    assert_user_error(
        capsys, ["extract", *common(tiny_folder, out), "--set", "no_such_key=1"], out, "unknown config key no_such_key"
    )
    assert_user_error(capsys, ["run", *common(tiny_folder, out), "--set", "read=first"], out, "read")


@pytest.mark.parametrize("spec", ["{en}", "{en}:two:1.0", "{en}:2", "{en}:2:strong"])
def test_malformed_steer_spec(tiny_folder, vectors, work, capsys, spec):  # noqa: F811
    out = work / "bad_spec"
    argv = ["eval", *common(tiny_folder, out), "--method", "x", "--steer", spec.format(en=vectors["en"])]
    assert_user_error(capsys, argv, out, "FILE:LAYER:GAMMA")


def test_steer_layer_out_of_range(tiny_folder, vectors, work, capsys):  # noqa: F811
    out = work / "bad_layer"
    argv = ["eval", *common(tiny_folder, out), "--method", "x", "--steer", f"{vectors['en']}:6:1.0"]
    assert_user_error(capsys, argv, out, "out of range")


def test_vector_file_of_the_wrong_width(tiny_folder, wrong_width, work, capsys):  # noqa: F811
    out = work / "bad_width"
    argv = ["eval", *common(tiny_folder, out), "--method", "x", "--steer", f"{wrong_width}:1:1.0"]
    assert_user_error(capsys, argv, out, "width 16")
    assert_user_error(capsys, ["sweep", *common(tiny_folder, out), "--vectors", wrong_width], out, "width 16")
    assert_user_error(capsys, ["steer", *common(tiny_folder, out), "--en", wrong_width, "--no-select"], out, "width")


def results_of(evals, folder, method: str):
    """A folder holding only ``method``'s two result files, copied from ``evals``."""
    folder.mkdir()
    for bench_name in ("gmmlu", "blend"):
        (folder / f"{method}.{bench_name}.json").write_bytes((evals / f"{method}.{bench_name}.json").read_bytes())
    return folder


def test_plane_without_base_results(evals, work, capsys):
    lone = results_of(evals, work / "only_steered", "steered")
    out = work / "bad_plane"
    assert_user_error(capsys, ["plane", lone, "--out", out], out, "base method 'base'")
    assert_user_error(capsys, ["plane", work / "no_such_results", "--out", out], out, "no results folder")
    # refused after the results were read: no empty --out folder is left behind either
    assert_user_error(capsys, ["plane", evals, "--lang", "ko", "--out", out], out, "no accuracy for language 'ko'")


def test_other_user_errors(tiny_folder, vectors, work, capsys):  # noqa: F811
    out = work / "bad_other"
    assert_user_error(
        capsys,
        ["sweep", *common(tiny_folder, out), "--vectors", vectors["en"], "--layers", "1,x"],
        out,
        "comma-separated",
    )
    assert_user_error(capsys, ["analyze", "--out", out], out, "nothing to analyse")
    assert_user_error(
        capsys, ["eval", *common(tiny_folder, out), "--steer", f"{work}/none.safetensors:1:1"], out, "no vector file"
    )
    argv = ["run", "--data", FIXTURES, "--lang", "zh", "--out", out]
    assert_user_error(capsys, argv, out, "model")


# --- the whole experiment ---------------------------------------------------------------------------
def test_run_end_to_end_on_one_language(tiny_folder, work):  # noqa: F811
    out = work / "run"
    ok("run", *common(tiny_folder, out), "--set", "loc_gammas=[0,1]")
    methods = ["base", "base+EN", "base+LOC", "base+SUR", "base+random"]
    for m in methods:
        for bench_name in ("gmmlu", "blend"):
            assert set(accuracy(out, m, bench_name)) == {"zh"}
    for bench_name in ("gmmlu", "blend"):
        for m in methods[1:]:
            delta = accuracy(out, m, bench_name)["zh"] - accuracy(out, "base", bench_name)["zh"]
            assert md_row(out / f"delta_{bench_name}.md", m) == [round(delta, 2)] * 2
    plans = read_json(out / "base.plans.json")
    sur = plans["sur"]["zh"]
    assert (sur["en_layer"], sur["loc_layer"]) == (2, 4) and sur["loc_gamma"] in (0.0, 1.0)
    assert set(sur["selection"]["loc_dev2_blend"]) == {"layer=4,gamma=0.0", "layer=4,gamma=1.0"}
    for name in (
        "plane.png",
        "plane.svg",
        "sper_by_layer.png",
        "sper_by_layer.csv",
        "splits_gmmlu.json",
        "splits_blend.json",
        "delta_gmmlu.csv",
        "delta_blend.md",
    ):
        assert nonempty(out / name), name
    for kind in ("en", "loc"):
        vset = load_vectors(out / "vectors" / "base" / f"{kind}_zh.safetensors")
        assert vset.meta.kind == kind.upper() and vset.vectors.shape == (6, 32)
    splits = read_json(out / "splits_gmmlu.json")["splits"]["zh"]
    assert not set(splits["dev1"]) & set(splits["test"]) and not set(splits["dev2"]) & set(splits["test"])


# --- bad inputs of issue 15: output locations, encodings, lengths, γ, empty pairs, zero vectors -----------
def assert_refused(capsys, argv, needle: str) -> str:
    """Exit 2 with one ``jaxsteer CMD: error:`` line matching ``needle``; returns the line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"jaxsteer {argv[0]}: error: ") and re.search(needle, lines[0]), lines[0]
    return lines[0]


def writers(folder, vectors, work) -> dict[str, list]:
    """Every command that writes, with its arguments before ``--out`` (or the file option of data check)."""
    return {
        "eval": ["eval", *common(folder, "X")[:-2]],
        "extract": ["extract", *common(folder, "X")[:-2]],
        "sweep": ["sweep", *common(folder, "X")[:-2], "--vectors", vectors["en"]],
        "steer": ["steer", *common(folder, "X")[:-2], "--en", vectors["en"], "--no-select"],
        "analyze": ["analyze", "--a", vectors["en"], "--b", vectors["loc"]],
        "run": ["run", *common(folder, "X")[:-2]],
        "plane": ["plane", work / "eval"],
        "train": ["train", "--config", os.path.join(ROOT, "configs", "cla", "tiny_mist.yaml")],
        "demo": ["demo", "--fast"],
        "data": ["data", "check", FIXTURES],
    }


@pytest.mark.parametrize(
    "command", ["eval", "extract", "sweep", "steer", "analyze", "run", "plane", "train", "demo", "data"]
)
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(
    command,
    tiny_folder,  # noqa: F811
    vectors,
    evals,
    work,
    tmp_path,
    capsys,  # noqa: F811
):
    """An existing file, a path under a file: FileExistsError/NotADirectoryError tracebacks before."""
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    argv = writers(tiny_folder, vectors, work)[command]
    if command == "data":  # its --out is a file: a folder there, or a file under a file
        (tmp_path / "folder").mkdir()
        assert_refused(capsys, [*argv, "--out", tmp_path / "folder"], "is a folder; expected a file name")
        assert_refused(capsys, [*argv, "--out", blocker / "report.json"], "blocker is a file, so .* cannot be written")
    else:
        assert_refused(capsys, [*argv, "--out", blocker], "blocker is a file, not a folder")
        assert_refused(capsys, [*argv, "--out", blocker / "sub"], "blocker is a file, so no folder can be made")
    assert sorted(os.listdir(tmp_path)) == sorted(["blocker", *(["folder"] if command == "data" else [])])
    assert blocker.read_text() == "mine"


def test_a_pairs_file_that_is_not_utf8_names_the_byte(tiny_folder, work, capsys):  # noqa: F811
    pairs = work / "pairs_euc_kr.jsonl"
    text = json.dumps({"positive": "한국의 수도는?", "negative": "What is the capital?"}, ensure_ascii=False) + "\n"
    pairs.write_bytes(text.encode("euc-kr"))
    offset = text.encode("euc-kr").index(b'"positive": "') + len('"positive": "')
    out = work / "bad_pairs_encoding"
    needle = rf"pairs_euc_kr.jsonl: not UTF-8: byte 0x[0-9a-f]{{2}} at offset {offset} \(line 1\)"
    assert_user_error(capsys, ["extract", *common(tiny_folder, out), "--pairs", pairs], out, needle)


def test_pairs_that_tokenise_to_nothing_are_refused(tiny_folder, work, capsys):  # noqa: F811
    pairs = work / "pairs_empty.jsonl"
    rows = [{"positive": "Answer: A", "negative": "Answer: B"}, {"positive": "", "negative": ""}]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = work / "bad_pairs_empty"
    needle = "pair 2: the positive text '' tokenises to nothing"
    assert_user_error(capsys, ["extract", *common(tiny_folder, out), "--pairs", pairs], out, needle)


def test_a_prompt_that_is_not_utf8_names_the_byte(tiny_folder, work, capsys):  # noqa: F811
    prompt = b"caf\xe9".decode("utf-8", "surrogateescape")  # a Latin-1 shell hands Python this argument
    argv = ["generate", "--model", tiny_folder, "--prompt", "fine", "--prompt", prompt]
    assert_user_error(capsys, argv, work / "none", r"--prompt 2 is not UTF-8: byte 0xe9 at offset 3")


@pytest.mark.parametrize("n", ["1000000", "10000000000"])
def test_max_new_tokens_beyond_the_context_is_refused_with_both_numbers(n, tiny_folder, work, capsys):  # noqa: F811
    needle = rf"max_new_tokens={n} exceeds the model's context: .* > 131072 positions"
    out = work / "bad_max_new_tokens"
    assert_user_error(capsys, ["eval", *common(tiny_folder, out), "--set", f"max_new_tokens={n}"], out, needle)
    assert_user_error(capsys, ["run", *common(tiny_folder, out), "--set", f"max_new_tokens={n}"], out, needle)
    argv = ["generate", "--model", tiny_folder, "--prompt", "hi", "--max-new-tokens", n]
    assert_user_error(capsys, argv, out, needle)


def test_a_gamma_that_is_not_finite_is_refused_as_a_gamma_before_anything_is_written(
    tiny_folder,  # noqa: F811
    vectors,
    work,
    capsys,  # noqa: F811
):
    out = work / "bad_gamma"
    for spec in (f"{vectors['en']}:2:nan", f"{vectors['en']}:2:inf"):
        argv = ["eval", *common(tiny_folder, out), "--method", "x", "--steer", spec]
        assert_user_error(capsys, argv, out, r"γ = (nan|inf) is not a finite number")
    argv = ["steer", *common(tiny_folder, out), "--en", vectors["en"], "--no-select", "--set", "en_gamma=.inf"]
    assert_user_error(capsys, argv, out, r"config key en_gamma: γ = inf is not a finite number")  # no plan.json
    argv = ["sweep", *common(tiny_folder, out), "--vectors", vectors["en"], "--gammas", "0,nan"]
    assert_user_error(capsys, argv, out, r"--gammas: γ = nan is not a finite number")


def test_a_vector_that_is_zero_at_the_requested_layer_is_refused(tiny_folder, tiny_model, work, capsys):  # noqa: F811
    cfg = tiny_model.config
    v = np.ones((cfg.num_layers, cfg.hidden_size), np.float32)
    v[3] = 0.0  # what an extraction from empty pairs gives at every layer
    path = save_vectors(work / "zero_at_3.safetensors", VectorSet.from_config(cfg, v, kind="EN"))
    out = work / "bad_zero_vector"
    needle = r"layer 3 has a zero vector in .*zero_at_3.safetensors"
    assert_user_error(capsys, ["eval", *common(tiny_folder, out), "--steer", f"{path}:3:2"], out, needle)
    argv = ["sweep", *common(tiny_folder, out), "--vectors", path, "--layers", "2,3", "--gammas", "0,1"]
    assert_user_error(capsys, argv, out, needle)
    argv = ["steer", *common(tiny_folder, out), "--en", path, "--no-select", "--set", "en_layer=3"]
    assert_user_error(capsys, argv, out, needle)


# --- nothing lost, nothing mixed ----------------------------------------------------------------------
def test_eval_of_another_model_into_a_results_folder_is_refused_unless_overwrite(
    tiny_folder,  # noqa: F811
    evals,
    work,
    capsys,  # noqa: F811
):
    """Model B's base.*.json used to replace model A's silently; --overwrite moves A's files aside, all of them."""
    import shutil

    res = work / "eval_of_a"
    shutil.copytree(evals, res)
    before = {p.name: p.read_bytes() for p in res.iterdir()}
    other = work / "model_b"
    shutil.copytree(tiny_folder, other)  # the same weights elsewhere: another model as far as a folder can tell
    line = assert_refused(capsys, ["eval", *common(other, res)], r"holds results of model .*; this is model .*model_b")
    assert os.path.realpath(tiny_folder) in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in res.iterdir()} == before
    ok("eval", *common(other, res), "--overwrite")
    aside = [p for p in res.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == sorted(before)
    assert read_json(res / "manifest.json")["writer"]["model"] == os.path.realpath(other)
    assert read_json(res / "base.gmmlu.json")["provenance"]["model"]["source"] == str(other)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "batch_size=.nan"], r"batch_size=nan must be an integer"),
        (["--set", "batch_size=.inf"], r"batch_size=inf must be an integer"),
        (["--set", "mesh=2", "--set", "mesh.data=2"], r"mesh was set to a value, not a mapping"),
        (["--set", "seed=-1"], r"seed=-1 must be in 0"),
        (["--set", "loc_gammas=[]"], r"loc_gammas is empty"),
        (["--set", "layer_window=-3"], r"layer_window=-3 must be ≥ 0"),
        (["--method", "../escaped"], r"--method '../escaped': a name for result files"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(tiny_folder, work, capsys, extra, needle):  # noqa: F811
    out = work / f"bad_settings_{abs(hash(needle))}"
    assert_user_error(capsys, ["eval", *common(tiny_folder, out), *extra], out, needle)


def test_more_user_errors_found_by_review(tiny_folder, vectors, evals, work, capsys, monkeypatch):  # noqa: F811
    out = work / "bad_more"
    monkeypatch.chdir(work)
    assert_user_error(capsys, ["eval", *common(tiny_folder, "")], out, r"--out is empty")
    assert not (work / "manifest.json").exists()  # an unset shell variable must not write into the current folder
    argv = ["sweep", *common(tiny_folder, out), "--vectors", vectors["en"], "--gammas", ","]
    assert_user_error(capsys, argv, out, r"',' names no value")
    assert_user_error(capsys, ["data", "check", FIXTURES, "--fail-under", "nan"], out, r"expected a percentage")
    assert_user_error(capsys, ["plane", evals, evals, "--out", out], out, r"a results folder is given twice")


def test_a_second_eval_of_the_same_method_does_not_replace_the_first(tiny_folder, evals, vectors, work, capsys):  # noqa: F811
    """Same model, same seed, same method name: the earlier result stays unless --overwrite; with --steer and no
    --method the result is named NAME+steered, beside the plain one."""
    import shutil

    res = work / "eval_twice"
    shutil.copytree(evals, res)
    before = (res / "base.gmmlu.json").read_bytes()
    assert_refused(capsys, ["eval", *common(tiny_folder, res)], r"already holds base\.\w+.*earlier call.*--overwrite")
    assert (res / "base.gmmlu.json").read_bytes() == before
    ok("eval", *common(tiny_folder, res), "--steer", f"{vectors['en']}:2:2.0")
    assert (res / "base.gmmlu.json").read_bytes() == before and (res / "base+steered.gmmlu.json").is_file()


def test_analyze_refuses_vector_files_of_two_configs_unless_forced(vectors, work, capsys):
    other = load_vectors(vectors["loc"])
    other = other.replace(config_hash="0" * len(other.meta.config_hash), model_name="another")
    b = save_vectors(work / "loc_other_config.safetensors", other)
    out = work / "analyze_two_configs"
    argv = ["analyze", "--a", vectors["en"], "--b", b, "--out", out]
    assert_user_error(capsys, argv, out, r"--b for another \(config 0+\).*--force")
    ok(*argv, "--force")
    assert nonempty(out / "sper.csv")


def test_analyze_with_a_model_that_cannot_load_writes_nothing(vectors, work, capsys):
    out = work / "bad_analyze"
    argv = ["analyze", "--a", vectors["en"], "--b", vectors["loc"], "--pca", "--model", work / "no_model", "--out", out]
    assert_user_error(capsys, argv, out, r"no_model")


def test_generate_decodes_the_same_tokens_in_the_scan_layout(tiny_folder, work, capsys):  # noqa: F811
    # fp32: in bf16 the unrolled layout's fused q/k/v and gate/up round differently, and greedy tokens may part
    base = ["generate", "--model", tiny_folder, "--dtype", "float32", "--prompt", "The museum", "--max-new-tokens", "6"]
    assert main(base) == 0
    default = capsys.readouterr().out
    assert main([*base, "--decode-layout", "scan"]) == 0
    assert capsys.readouterr().out == default
    assert_user_error(capsys, [*base, "--decode-layout", "fast"], work / "nothing", r"decode_layout='fast'")


def test_generate_steers_with_vector_files_as_the_api_does(tiny_folder, tiny_model, letter_vector, work, capsys):  # noqa: F811
    from jaxsteer.model.decode import generate
    from jaxsteer.study.surgical import combined_steering
    from jaxsteer.tokens import decode_new, encode_batch

    base = ["generate", "--model", tiny_folder, "--dtype", "float32", "--prompt", "The museum", "--max-new-tokens", "4"]
    assert main(base) == 0
    plain = capsys.readouterr().out
    vectors = load_vectors(letter_vector).vectors
    ids, mask = encode_batch(tiny_model.tokenizer, ["The museum"])
    outputs = {}
    for scope in ("all", "prompt", "generated"):
        assert main([*base, "--steer", f"{letter_vector}:5:{LETTER_GAMMA}", "--scope", scope]) == 0
        outputs[scope] = capsys.readouterr().out
        plan = combined_steering(tiny_model.config, [(vectors, 5, LETTER_GAMMA)], scope)
        (text,) = decode_new(tiny_model.tokenizer, generate(tiny_model, ids, 4, mask, steering=plan), tiny_model.config)
        assert outputs[scope] == f"{'The museum'!r} -> {text!r}\n"
    assert outputs["all"] != plain and len(set(outputs.values())) > 1  # steering moved it, and the scope matters
    assert_user_error(capsys, [*base, "--steer", f"{letter_vector}:5"], work / "nothing", r"expected FILE:LAYER:GAMMA")


def test_plane_and_analyze_keep_an_earlier_call_and_stay_out_of_results_folders(evals, vectors, work, capsys):
    out = work / "plane_twice"
    ok("plane", evals, "--out", out)
    first = (out / "delta_gmmlu.md").read_bytes()
    assert_refused(capsys, ["plane", evals, "--out", out], r"already holds delta_gmmlu\.csv .*--overwrite")
    ok("plane", evals, "--out", out, "--overwrite")
    (aside,) = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert (aside / "delta_gmmlu.md").read_bytes() == first  # moved, not lost
    assert_refused(capsys, ["plane", evals, "--out", evals], r"results folder of another jaxsteer command")
    pair = ["analyze", "--a", vectors["en"], "--b", vectors["loc"]]
    ok(*pair, "--out", work / "an_twice")
    assert_refused(capsys, [*pair, "--out", work / "an_twice"], r"already holds sper\.csv")
    assert_refused(capsys, [*pair, "--out", evals], r"results folder of another jaxsteer command")


def test_overwrite_of_a_same_writer_result_keeps_the_old_one_aside(tiny_folder, evals, work):  # noqa: F811
    import shutil

    res = work / "eval_overwrite"
    shutil.copytree(evals, res)
    before = (res / "base.gmmlu.json").read_bytes()
    ok("eval", *common(tiny_folder, res), "--overwrite")
    (aside,) = [p for p in res.iterdir() if p.name.startswith("replaced-")]
    assert (aside / "base.gmmlu.json").read_bytes() == before and (res / "base.gmmlu.json").is_file()
    manifest = read_json(res / "manifest.json")
    assert "eval:base" in manifest["stages"] and "eval:steered" in manifest["stages"]  # the other result kept


def test_a_refused_plane_moves_nothing_and_a_first_one_leaves_no_replaced_folder(evals, work, capsys):
    out = work / "plane_refused"
    ok("plane", evals, "--out", out)
    assert not [p for p in out.iterdir() if p.name.startswith("replaced-")]
    before = sorted(p.name for p in out.iterdir())
    assert_refused(capsys, ["plane", evals, "--lang", "ko", "--out", out, "--overwrite"], r"ko")
    assert sorted(p.name for p in out.iterdir()) == before  # refused after the check: the old files stay put


def test_overwrite_sets_the_whole_earlier_stage_aside_and_only_just_before_writing(tiny_folder, evals, work, capsys):  # noqa: F811
    """The stage's every file goes aside with the clash (a file the new call does not write must not stay
    unlisted, to be replaced silently later); a call that fails before writing moves nothing."""
    import shutil

    res = work / "eval_stage_aside"
    shutil.copytree(evals, res)
    stage_files = read_json(res / "manifest.json")["stages"]["eval:base"]["files"]
    extra = res / "base.extra.json"  # stands for base.blend_mc_ll.json: in the stage, not in this call's plan
    extra.write_text("{}")
    manifest = read_json(res / "manifest.json")
    manifest["stages"]["eval:base"]["files"].append("base.extra.json")
    (res / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in res.iterdir())
    argv = ["eval", *common(tiny_folder, res), "--overwrite", "--data", work / "no_data_here"]
    assert main([str(a) for a in argv]) == 2
    capsys.readouterr()
    assert sorted(p.name for p in res.iterdir()) == before  # refused on its data: nothing moved
    ok("eval", *common(tiny_folder, res), "--overwrite")
    (aside,) = [p for p in res.iterdir() if p.name.startswith("replaced-")]
    assert sorted(p.name for p in aside.iterdir()) == sorted([*stage_files, "base.extra.json"])
    assert not extra.exists() and "eval:steered" in read_json(res / "manifest.json")["stages"]


def test_plane_with_only_the_base_writes_nothing(evals, work, capsys):
    lone = results_of(evals, work / "only_base", "base")
    out = work / "plane_only_base"
    assert_user_error(capsys, ["plane", lone, "--out", out], out, r"no \w+ result of a method besides the base")


def test_analyze_pca_of_one_language_is_refused_before_anything_is_written(tiny_folder, work, capsys):  # noqa: F811
    out = work / "pca_one_language"
    assert_user_error(capsys, ["analyze", "--pca", *common(tiny_folder, out)], out, r"--pca compares languages")


def test_analyze_pca_with_missing_data_writes_nothing_and_keeps_the_earlier_files(tiny_folder, vectors, work, capsys):  # noqa: F811
    """The S_PER half and the Global-MMLU panels were written before the BLEnD data was read: a data error left
    half a set (and, with --overwrite, moved the earlier complete set aside for it)."""
    import shutil

    data = work / "data_without_korea"
    shutil.copytree(FIXTURES, data)
    (data / "blend" / "questions" / "South_Korea_questions.csv").unlink()
    out = work / "pca_missing_data"
    args = common(tiny_folder, out)
    i = args.index("--lang")
    args[i : i + 2] = ["--set", "languages=[zh,ko]"]
    good = [str(a) for a in ["analyze", "--a", vectors["en"], "--b", vectors["loc"], "--pca", *args]]
    bad = [*good, "--data", str(data)]
    assert_user_error(capsys, bad, out, r"South_Korea|Korea|ko")
    ok(*good)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"sper.csv", "pca_convergence.csv", "pca_blend.png"} <= set(before)
    assert main([*bad, "--overwrite"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing moved, nothing half-written


def test_a_vector_file_applied_to_other_languages_says_so(tiny_folder, vectors, work):  # noqa: F811
    args = common(tiny_folder, work / "sweep_ko_with_zh")
    args[args.index("--lang") + 1] = "ko"
    rc, _, err = call("sweep", *args, "--vectors", vectors["en"], "--layers", "2", "--gammas", "0,1")
    assert rc == 0, err
    assert f"note: {vectors['en']} holds vectors extracted from zh pairs; applying them to ko too" in err
    rc, _, err = call("sweep", *common(tiny_folder, work / "sweep_zh"), "--vectors", vectors["en"], "--layers", "2")
    assert rc == 0 and "note:" not in err
    rc, _, err = call("eval", *args[:-2], "--out", work / "eval_ko_with_zh", "--steer", f"{vectors['en']}:2:1")
    assert rc == 0 and "applying them to ko too" in err, err
