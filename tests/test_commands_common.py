"""The experiment configs of ``configs/experiments/`` are accepted by every single-model command, which
takes one model out of ``models:`` (``--model-name``, default ``base``) and ignores ``jaxsteer run``'s keys."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from jaxsteer.cli import build_parser
from jaxsteer.commands._common import experiment_config
from jaxsteer.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "configs", "experiments", "*.yaml")))
SINGLE_MODEL = ("extract", "sweep", "steer", "analyze", "eval")
REQUIRED = {"sweep": ["--vectors", "v.safetensors"], "steer": ["--en", "v.safetensors"]}


def parse(command: str, *argv: str):
    return build_parser().parse_args([command, *REQUIRED.get(command, []), *argv])


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
@pytest.mark.parametrize("command", SINGLE_MODEL)
def test_every_command_reads_the_shipped_experiment_configs(command, path):
    with open(path, encoding="utf-8") as f:
        models = yaml.safe_load(f)["models"]
    cfg, extra = experiment_config(parse(command, "--config", path))
    assert cfg.model == models["base"] and extra["models"] == models


def write_config(tmp_path, **data) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"languages": ["zh"], "steer": ["base"], **data}))
    return str(path)


def test_model_name_picks_a_model_and_model_overrides(tmp_path):
    path = write_config(tmp_path, models={"base": "runs/base", "midalign": "runs/midalign/export"})
    assert experiment_config(parse("extract", "--config", path, "--model-name", "midalign"))[0].model == (
        "runs/midalign/export"
    )
    assert experiment_config(parse("eval", "--config", path, "--model", "elsewhere"))[0].model == "elsewhere"
    assert experiment_config(parse("eval", "--config", path, "--set", "models.base=b2"))[0].model == "b2"
    # `run` keeps every model for itself
    cfg, extra = experiment_config(build_parser().parse_args(["run", "--config", path]), ("models", "steer"))
    assert cfg.model == "" and extra == {"models": {"base": "runs/base", "midalign": "runs/midalign/export"},
                                         "steer": ["base"]}  # fmt: skip


@pytest.mark.parametrize(
    ("models", "argv", "needle"),
    [
        ({"base": "a"}, ["--model-name", "clo"], "no model named 'clo' in the config's models \\(base\\)"),
        ({"mist": "a"}, [], "no model named 'base'"),
        (None, ["--model-name", "base"], "has no `models:`"),
        ({"base": "a"}, ["--model-name", "base", "--model", "b"], "not both"),
        (["a", "b"], [], "must map names to model folders"),
    ],
)
def test_model_choice_mistakes_are_one_line_config_errors(tmp_path, models, argv, needle):
    path = write_config(tmp_path, **({} if models is None else {"models": models}))
    with pytest.raises(ConfigError, match=needle):
        experiment_config(parse("extract", "--config", path, *argv))
