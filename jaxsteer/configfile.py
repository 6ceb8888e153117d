"""YAML config files validated into frozen dataclasses, with ``key=value`` overrides from the CLI.

Every experiment default lives in a dataclass field (so it is named and documented), a YAML file
sets some of them, and ``--set key=value`` (or a dedicated flag) overrides one. Unknown keys and
values of the wrong type are one-line ``ConfigError``s naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from typing import Any, TypeVar

import yaml

from jaxsteer.errors import ConfigError

T = TypeVar("T")
# YAML 1.1 (PyYAML) reads `2e-4` and `1e3` as strings (its floats need a dot: 2.0e-4); in a number field such a
# string is the number the user wrote (`--set optim.lr=2e-4`, `lr: 3e-4`)
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"no config file at {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values")
    return data


# "mesh.data=4,mesh.model=2": one --set may set several keys of one section — split only at a comma that starts
# another key of the same section ("mesh."), so a value's own commas ("data=/runs/a,seed=3", free text) stay
_SECTION = re.compile(r"^\s*([A-Za-z_][\w-]*)\.[\w.-]+=")


def _split_keys(item: str) -> list[str]:
    m = _SECTION.match(item)
    if not m:
        return [item]
    return [part.strip() for part in re.split(rf",(?=\s*{re.escape(m.group(1))}\.[\w.-]+=)", item)]


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=[1, 2]"]`` → ``{"a": 1, "b": {"c": [1, 2]}}``; values are parsed as YAML. One item may set
    several keys of one section, comma-separated: ``mesh.data=4,mesh.model=2``."""
    out: dict[str, Any] = {}
    split = [part for item in items or [] for part in _split_keys(item)]
    for item in split:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.strip().split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):  # --set mesh=2 --set mesh.data=2
                raise ConfigError(f"override {item!r}: {'.'.join(parents[: i + 1])} was set to a value, not a mapping")
        node[leaf] = value
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in update.items():
        merged[k] = merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any or value is None and (type(None) in args):
        return value
    if origin in (typing.Union, types.UnionType):
        nested = [a for a in args if dataclasses.is_dataclass(a)]
        if isinstance(value, dict) and len(nested) == 1:  # an optional section: keep its precise errors
            return _coerce(value, nested[0], key)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key}={value!r} has the wrong type (expected {hint})")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} must be a mapping")
        return build(hint, value, prefix=f"{key}.")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[str, float]
            if len(value) != len(args):
                raise ConfigError(f"config key {key}={value!r} must have {len(args)} items")
            return tuple(_coerce(v, arg, key) for v, arg in zip(value, args))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} must be a mapping")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key}={value!r} must be true or false")
    if hint in (int, float):
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key}={value!r} must be a number")
        if hint is int and (not math.isfinite(value) or float(value) != int(value)):
            raise ConfigError(f"config key {key}={value!r} must be an integer")
        return hint(value)
    if hint is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"config key {key}={value!r} must be a string")
        return str(value)
    return value


def build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and coercing types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"config {cls.__name__}: {e}") from None


def load(cls: type[T], path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> T:
    data = read_yaml(path) if path else {}
    return build(cls, merge(data, overrides or {}))


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
