"""The offline main job: the shipped organism and a fast run of the whole demo pipeline."""

import json
import os

import numpy as np
import pytest

from jaxsteer import metrics
from jaxsteer.cli import main
from jaxsteer.organism.demo import DemoConfig, assets_info, write_demo_world
from jaxsteer.organism.model import ASSETS, load_organism, training_fact_accuracy


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
    for name in ("report.md", "plane.png", "plane.svg", "sper_by_layer.png", "delta_gmmlu.md", "delta_blend.csv",
                 "plane.csv", "demo.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    cfg = DemoConfig.fast(out)
    runs = os.path.join(out, "runs")
    # the aggregated Δ table equals the per-language result files
    table = {}
    for line in open(os.path.join(out, "delta_gmmlu.csv")).read().splitlines()[1:]:
        cells = line.split(",")
        table[cells[0]] = [float(c) for c in cells[1 : 1 + len(cfg.languages)]]
    base = json.load(open(os.path.join(runs, "base.gmmlu.json")))["accuracy"]
    sur = json.load(open(os.path.join(runs, "MIDALIGN_s0+SUR.gmmlu.json")))["accuracy"]
    want = [sur[lang] - base[lang] for lang in cfg.languages]
    np.testing.assert_allclose(table["MIDALIGN+SUR"], want, atol=0.01)
    report = open(os.path.join(out, "report.md")).read()
    assert "What the organism shows" in report and "MIDALIGN" in report
    points = json.load(open(os.path.join(out, "demo.json")))["points"]
    assert metrics.quadrant(points["base+SUR"]["dx"], points["base+SUR"]["dy"]) == points["base+SUR"]["quadrant"]


def test_demo_world_is_in_the_real_schemas(demo_world):
    from jaxsteer.data import blend, flores, gmmlu, oasst

    assert gmmlu.load_gmmlu(demo_world, "ko", "test", "CA")
    assert blend.load_blend(demo_world, "ko")
    assert flores.load_flores_pairs(demo_world, "en", "ko", "dev")
    assert oasst.load_oasst_xx(demo_world, ["ko"])
    assert os.path.isfile(os.path.join(demo_world, "blend", "decontext", "South_Korea.jsonl"))
    assert os.path.isfile(os.path.join(ASSETS, "model.safetensors"))
