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


def test_a_steered_aligned_model_is_judged_by_the_spread_of_its_per_seed_differences(tmp_path):
    """MIDALIGN+LOC − MIDALIGN per seed: (+10, +6, +2) on one language → +6 ± 4 (the paired s.d.), not the
    steered row's own s.d. alone; with one seed nothing is judged (a spread of 0.0 counted every difference)."""
    from jaxsteer.organism.demo import conclusions, paired_spread

    runs = str(tmp_path)
    for seed, (plain, loc) in enumerate([(50.0, 60.0), (40.0, 46.0), (30.0, 32.0)]):
        _result(runs, f"MIDALIGN_s{seed}", "blend", {"zh": plain})
        _result(runs, f"MIDALIGN_s{seed}+LOC", "blend", {"zh": loc})
    assert paired_spread(runs, "MIDALIGN+LOC", "MIDALIGN", "blend", (0, 1, 2)) == pytest.approx(4.0)
    assert paired_spread(runs, "MIDALIGN+LOC", "MIDALIGN", "blend", (0,)) is None
    points = {"MIDALIGN": metrics.PlanePoint("MIDALIGN", 0.0, -5.0, 0.0, 10.0),
              "MIDALIGN+LOC": metrics.PlanePoint("MIDALIGN+LOC", 0.0, 1.0, 0.0, 14.0)}  # fmt: skip
    text = " ".join(conclusions(points, runs, (0, 1, 2)))
    assert "LOC-steering on MIDALIGN, BLEnD: raised by 6.0 points (± 4.0 s.d. over seeds)" in text
    one = " ".join(conclusions(points, runs, (0,)))
    assert "LOC-steering on MIDALIGN, BLEnD: +6.0 points (one seed: no spread over seeds to judge it by)" in one
    assert "MIDALIGN vs base, BLEnD (localization): -5.0 points (one seed" in one


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--retrain", "--world", "no_such_knob=1"], "unknown config key no_such_knob"),
        (["--retrain", "--world", "shared_fraction=half"], "must be a number"),
        (["--retrain", "--world", "shared_fraction=1.5"], "fractions in"),
        (["--world", "shared_fraction=0.1"], "pass it with --retrain"),
        # seeds: checked before the world is written and training starts; "0,0" would report one run as two
        (["--seeds=-1"], "-1 is not in 0"),
        (["--seeds", "0,0"], "a seed is given twice"),
        (["--seeds", ","], "give at least one seed"),
    ],
)
def test_bad_world_knobs_are_one_line_errors(tmp_path, capsys, argv, needle):
    out = tmp_path / "demo_out"
    rc = main(["demo", *argv, "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_the_demo_keeps_out_of_other_folders_and_never_deletes_a_folder_it_did_not_write(tmp_path, capsys):
    """``--out`` another command's results folder was rewritten; ``--retrain --model DIR`` deleted DIR's files."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "manifest.json").write_text("{}")
    assert main(["demo", "--fast", "--out", str(results)]) == 2
    assert "is the results folder of another jaxsteer command (manifest.json)" in capsys.readouterr().err
    assert sorted(p.name for p in results.iterdir()) == ["manifest.json"]
    victim = tmp_path / "mine"
    victim.mkdir()
    (victim / "important.txt").write_text("keep")
    out = tmp_path / "demo_out"
    argv = ["demo", "--retrain", "--steps", "1", "--batch", "2", "--retrain-only", "--model", str(victim)]
    assert main([*argv, "--out", str(out)]) == 2
    assert "holds files that are not an organism" in capsys.readouterr().err
    assert (victim / "important.txt").read_text() == "keep" and not out.exists()
