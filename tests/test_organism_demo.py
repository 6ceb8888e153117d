"""The offline main job: the shipped organism and a fast run of the whole demo pipeline."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxsteer.cli import main
from jaxsteer.organism.demo import DemoConfig, assets_info, write_demo_world
from jaxsteer.organism.model import ASSETS, load_organism, training_fact_accuracy
from jaxsteer.study import metrics


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("organism") / "world")
    write_demo_world(root)
    return root


def test_shipped_weights_reach_the_recorded_accuracy(demo_world):
    info = assets_info()
    assert "english_fact_accuracy" in info, "assets/pretrain.json lacks the recorded accuracy"
    model = load_organism()
    assert model.config.num_layers == 6 and any(model.config.is_global) and not all(model.config.is_global)
    got = training_fact_accuracy(model, demo_world)
    # the same CPU computation that wrote the record: a stale or corrupted file would miss it by far more
    assert abs(got - info["english_fact_accuracy"]) <= 1.0


def test_fast_demo_writes_every_output_with_consistent_numbers(tmp_path):
    out = str(tmp_path / "demo")
    assert main(["demo", "--fast", "--out", out]) == 0
    for name in (
        "report.md",
        "plane.png",
        "plane.svg",
        "sper_by_layer.png",
        "delta_gmmlu.md",
        "delta_blend.csv",
        "plane.csv",
        "demo.json",
    ):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    cfg = DemoConfig.fast(out)
    runs = os.path.join(out, "runs")
    # the aggregated Δ table equals the per-language result files
    table = {}
    for line in Path(out, "delta_gmmlu.csv").read_text().splitlines()[1:]:
        cells = line.split(",")
        table[cells[0]] = [float(c) for c in cells[1 : 1 + len(cfg.languages)]]
    base = json.loads(Path(runs, "base.gmmlu.json").read_text())["accuracy"]
    sur = json.loads(Path(runs, "MIDALIGN_s0+SUR.gmmlu.json").read_text())["accuracy"]
    want = [sur[lang] - base[lang] for lang in cfg.languages]
    np.testing.assert_allclose(table["MIDALIGN+SUR"], want, atol=0.01)
    report = Path(out, "report.md").read_text()
    assert "What the organism shows" in report and "MIDALIGN" in report
    points = json.loads(Path(out, "demo.json").read_text())["points"]
    assert metrics.quadrant(points["base+SUR"]["dx"], points["base+SUR"]["dy"]) == points["base+SUR"]["quadrant"]


def test_demo_world_is_in_the_real_schemas(demo_world):
    from jaxsteer.data import blend, flores, gmmlu, oasst

    assert gmmlu.load_gmmlu(demo_world, "ko", "test", "CA")
    assert blend.load_blend(demo_world, "ko")
    assert flores.load_flores_pairs(demo_world, "en", "ko", "dev")
    assert oasst.load_oasst_xx(demo_world, ["ko"])
    assert os.path.isfile(os.path.join(demo_world, "blend", "decontext", "South_Korea.jsonl"))
    assert os.path.isfile(os.path.join(ASSETS, "model.safetensors"))


def test_demo_from_a_folder_without_weights_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "demo_out"
    rc = main(["demo", "--fast", "--model", str(tmp_path / "no_organism"), "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "no organism weights" in err[0], err
    assert not out.exists()


def _result(runs, method, bench, accuracy):
    with open(os.path.join(runs, f"{method}.{bench}.json"), "w") as f:
        json.dump({"method": method, "accuracy": accuracy}, f)


def test_single_runs_are_judged_by_the_binomial_error_over_items(tmp_path):
    from jaxsteer.organism.demo import conclusions, single_run_se

    runs = str(tmp_path)
    from jaxsteer.data.splits import Split, save_splits

    test_ids = {"zh": 40, "ko": 10}  # test items per language
    splits = {lang: Split(lang, 0, (), (), tuple(f"{lang}{i}" for i in range(n))) for lang, n in test_ids.items()}
    save_splits(splits, os.path.join(runs, "splits_blend.json"))
    _result(runs, "base", "blend", {"zh": 50.0, "ko": 80.0})
    _result(runs, "base+LOC", "blend", {"zh": 60.0, "ko": 80.0})
    # by hand: zh (0.25 + 0.24) / 40, ko (0.16 + 0.16) / 10; mean over 2 languages
    want = 100 * np.sqrt((0.25 + 0.24) / 40 + 0.32 / 10) / 2
    assert single_run_se(runs, "base+LOC", "base", "blend") == pytest.approx(want)  # 10.6 points
    loc = metrics.PlanePoint("base+LOC", 0.0, 5.0)  # +5 < 2 s.e.: no claim
    text = " ".join(conclusions({"base+LOC": loc}, runs))
    assert "LOC-steering on base, BLEnD: no change beyond the item noise" in text
    _result(runs, "base+LOC", "blend", {"zh": 100.0, "ko": 100.0})
    loc = metrics.PlanePoint("base+LOC", 0.0, 35.0)  # s.e. now 100*sqrt(0.25/40 + 0.16/10)/2 = 7.5 points
    assert "LOC-steering on base, BLEnD: raised by 35.0 points" in " ".join(conclusions({"base+LOC": loc}, runs))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--retrain", "--world", "no_such_knob=1"], "unknown config key no_such_knob"),
        (["--retrain", "--world", "shared_fraction=half"], "must be a number"),
        (["--retrain", "--world", "shared_fraction=1.5"], "fractions in"),
        (["--world", "shared_fraction=0.1"], "pass it with --retrain"),
    ],
)
def test_bad_world_knobs_are_one_line_errors(tmp_path, capsys, argv, needle):
    out = tmp_path / "demo_out"
    rc = main(["demo", *argv, "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()
