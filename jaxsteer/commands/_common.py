"""Flags shared by several sub-commands and the model loading they imply."""

from __future__ import annotations

import argparse

from jaxsteer.configfile import parse_overrides


def add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="HF Gemma-3 folder (or hub id when online)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="parameter dtype")


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")


def overrides(args: argparse.Namespace, **flags) -> dict:
    """``--set`` overrides plus dedicated flags that were given (None means not given)."""
    out = parse_overrides(getattr(args, "set", None))
    out.update({k: v for k, v in flags.items() if v is not None})
    return out


def load_model(args: argparse.Namespace):
    from jaxsteer.checkpoint.hf import load_pretrained

    return load_pretrained(args.model, dtype=args.dtype)
