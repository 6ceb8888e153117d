"""The README's command-line flows that mix configs and folders: an experiment config with ``models:`` in
``jaxsteer eval``, and ``jaxsteer plane`` over results evaluated on different languages."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from tiny_checkpoint import FIXTURES, tiny_folder  # noqa: F401

from jaxsteer.cli import main


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_eval_takes_the_named_model_of_an_experiment_config(tiny_folder, tmp_path, capsys):  # noqa: F811
    """``--model-name`` names the result files and the base identity is the config's ``models.base``, as
    ``jaxsteer run`` writes it, so a CLA model's files compare with the base's."""
    config = tmp_path / "exp.yaml"
    models = {"base": os.path.abspath(tiny_folder), "cla": os.path.abspath(tiny_folder)}
    settings = {"data": FIXTURES, "languages": ["zh"], "allow_small": True, "batch_size": 8, "max_new_tokens": 2}
    config.write_text(yaml.safe_dump({"models": models, "steer": ["base"], "dtype": "float32", **settings}))
    out = tmp_path / "res"
    assert main(["eval", "--config", str(config), "--model-name", "cla", "--quiet", "--out", str(out)]) == 0
    result = read_json(out / "cla.gmmlu.json")
    assert result["method"] == "cla" and result["base_model"] == models["base"]
    assert set(result["accuracy"]) == {"zh"} and "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["base+SUR", "cla/x", " cla"])
def test_run_refuses_a_model_name_that_cannot_name_result_files(name, tiny_folder, tmp_path, capsys):  # noqa: F811
    """``base+SUR`` as a model would never be evaluated: its row would show base's SUR."""
    config = tmp_path / "exp.yaml"
    models = {"base": os.path.abspath(tiny_folder), name: os.path.abspath(tiny_folder)}
    config.write_text(yaml.safe_dump({"models": models, "steer": ["base"], "dtype": "float32", "data": FIXTURES}))
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"models: {name!r} is not a model name" in err, err
    assert not out.exists()


def write_result(folder, method: str, accuracy: dict[str, float]) -> None:
    os.makedirs(folder, exist_ok=True)
    for bench in ("gmmlu", "blend"):
        data = {"method": method, "accuracy": accuracy, "config_hash": "h", "base_model": "m", "seed": 0}
        with open(os.path.join(folder, f"{method}.{bench}.json"), "w", encoding="utf-8") as f:
            json.dump(data, f)


@pytest.fixture
def mixed(tmp_path):
    """base on zh, ko and es; EN (``jaxsteer eval --lang ko``) on ko only; LOC on ko and es."""
    res = tmp_path / "res"
    write_result(res, "base", {"zh": 40.0, "ko": 50.0, "es": 60.0})
    write_result(res, "EN", {"ko": 55.0})
    write_result(res, "LOC", {"ko": 45.0, "es": 70.0})
    return res


def test_plane_compares_on_the_languages_every_method_has_and_says_which_were_left_out(mixed, tmp_path, capsys):
    out = tmp_path / "plane"
    assert main(["plane", str(mixed), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = (
        "comparing on ko, the languages every method has; left out: zh (no result from EN, LOC); es (no result from EN)"
    )
    assert printed.splitlines()[0] == expected
    header = (out / "delta_gmmlu.md").read_text().splitlines()[0]
    assert header == "| method | ko | mean |"
    assert "| EN | +5.00 | +5.00 |" in (out / "delta_gmmlu.md").read_text()


def test_plane_on_a_language_a_method_lacks_is_one_line(mixed, tmp_path, capsys):
    out = tmp_path / "plane"
    assert main(["plane", str(mixed), "--lang", "zh", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no accuracy for language 'zh' (it has ko)" in lines[0]


def test_plane_without_a_common_language_is_one_line(tmp_path, capsys):
    res = tmp_path / "res"
    write_result(res, "base", {"zh": 40.0})
    write_result(res, "EN", {"ko": 55.0})
    assert main(["plane", str(res), "--out", str(tmp_path / "plane")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("zh (no result from EN); ko (no result from base)")
