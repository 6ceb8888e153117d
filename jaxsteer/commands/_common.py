"""Flags shared by several sub-commands, and the config/model loading they imply."""

from __future__ import annotations

import argparse

from jaxsteer.configfile import parse_overrides


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="HF Gemma-3 folder (or hub id when online)")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float32"], help="parameter dtype (default bfloat16)")


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    add_model_args(p, required=False)
    p.add_argument("--data", help="data root (layout in jaxsteer/data/files.py) or hub ids")
    p.add_argument("--lang", action="append", help="language code (repeatable; default: the config's)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def overrides(args: argparse.Namespace, **flags) -> dict:
    """``--set`` overrides plus dedicated flags that were given (None means not given)."""
    out = parse_overrides(getattr(args, "set", None))
    out.update({k: v for k, v in flags.items() if v is not None})
    return out


def experiment_config(args: argparse.Namespace, extra_keys: tuple[str, ...] = ()):
    """The ExperimentConfig of ``--config`` + flags; keys in ``extra_keys`` are returned apart."""
    from jaxsteer.configfile import build, merge, read_yaml
    from jaxsteer.study.experiment import ExperimentConfig

    data = read_yaml(args.config) if getattr(args, "config", None) else {}
    data = merge(
        data,
        overrides(
            args,
            model=getattr(args, "model", None),
            dtype=getattr(args, "dtype", None),
            data=getattr(args, "data", None),
            out=getattr(args, "out", None),
        ),
    )
    if getattr(args, "lang", None):
        data["languages"] = list(args.lang)
    extra = {k: data.pop(k) for k in extra_keys if k in data}
    return build(ExperimentConfig, data), extra


def load_model(args_or_cfg):
    from jaxsteer.checkpoint.hf import load_pretrained
    from jaxsteer.errors import ConfigError

    source = getattr(args_or_cfg, "model", None)
    if not source:
        raise ConfigError("no model given: pass --model FOLDER or set `model:` in the config")
    return load_pretrained(source, dtype=getattr(args_or_cfg, "dtype", None) or "bfloat16")


def add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --out holding results of another model or seed: its files move to OUT/replaced-DATE/",
    )


def claim_results(out: str, model, seed: int, overwrite: bool, planned_files=()):
    """The results folder ``out`` for this model and seed (see :class:`jaxsteer.outputs.ResultsFolder`)."""
    from jaxsteer.outputs import ResultsFolder, model_identity

    writer = {"model": model_identity(model.source), "config_hash": model.config.config_hash(), "seed": seed}
    return ResultsFolder.claim(out, writer, overwrite=overwrite, planned_files=planned_files)
