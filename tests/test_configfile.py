"""Config values as users write them: numbers in exponent notation, which YAML 1.1 reads as strings."""

from __future__ import annotations

import os

import pytest

from jaxsteer.cla import config as cla_config
from jaxsteer.configfile import build, parse_overrides
from jaxsteer.errors import ConfigError
from jaxsteer.study.experiment import ExperimentConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_exponent_numbers_from_the_command_line_are_numbers():
    """The README's `python train/midalign.py --set optim.lr=2e-4` (before: "optim.lr='2e-4' must be a number")."""
    cfg = cla_config.load(os.path.join(ROOT, "configs", "cla", "midalign.yaml"), parse_overrides(["optim.lr=2e-4"]))
    assert cfg.optim.lr == pytest.approx(2e-4)
    exp = build(ExperimentConfig, parse_overrides(["en_gamma=1E+0", "loc_gammas=[0, 5e-1]", "batch_size=1e1"]))
    assert (exp.en_gamma, exp.loc_gammas, exp.batch_size) == (1.0, (0.0, 0.5), 10)


@pytest.mark.parametrize(("item", "needle"), [("en_gamma=2e", "must be a number"), ("batch_size=1e-1", "integer")])
def test_other_strings_in_number_fields_stay_errors(item, needle):
    with pytest.raises(ConfigError, match=needle):
        build(ExperimentConfig, parse_overrides([item]))


def test_one_override_may_set_several_keys_of_a_section_separated_by_commas():
    """The README's and issue's ``--set mesh.data=4,mesh.model=2`` (was: "mesh.data='4,mesh.model=2' must be a
    number"); a value's own commas stay in the value, even before something that looks like a key."""
    assert parse_overrides(["mesh.data=4,mesh.model=2", "mesh.fsdp=1"]) == {"mesh": {"data": 4, "model": 2, "fsdp": 1}}
    assert parse_overrides(["models.base=/ckpt/a,models.midalign-s0=/ckpt/b"]) == {
        "models": {"base": "/ckpt/a", "midalign-s0": "/ckpt/b"}
    }
    assert parse_overrides(["languages=[zh, ko]", "data=/runs/dev1=20,seed=3", "mesh.data=/x,y=1"]) == {
        "languages": ["zh", "ko"],
        "data": "/runs/dev1=20,seed=3",
        "mesh": {"data": "/x,y=1"},
    }
