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


def add_experiment_args(p: argparse.ArgumentParser, model_name: bool = True) -> None:
    add_config_args(p)
    add_model_args(p, required=False)
    if model_name:
        p.add_argument(
            "--model-name",
            metavar="NAME",
            help="which model of the config's `models:` to use (default: base; --model overrides)",
        )
    p.add_argument("--data", help="data root (layout in jaxsteer/data/files.py) or hub ids")
    p.add_argument("--lang", action="append", help="language code (repeatable; default: the config's)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def overrides(args: argparse.Namespace, **flags) -> dict:
    """``--set`` overrides plus dedicated flags that were given (None means not given)."""
    out = parse_overrides(getattr(args, "set", None))
    out.update({k: v for k, v in flags.items() if v is not None})
    return out


# Keys of an experiment config that `jaxsteer run` reads (every model of the study, the ones it steers); the
# single-model commands accept the same files and take one model out of `models:`.
RUN_KEYS = ("models", "steer")


def experiment_config(args: argparse.Namespace, extra_keys: tuple[str, ...] = ()):
    """The ExperimentConfig of ``--config`` + flags; keys in ``extra_keys`` and :data:`RUN_KEYS` are returned
    apart. Without a ``model`` (config key or ``--model``), ``--model-name`` (default ``base``) picks it
    from the config's ``models:``."""
    from jaxsteer.configfile import build, merge, read_yaml
    from jaxsteer.errors import ConfigError
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
    extra = {k: data.pop(k) for k in (*extra_keys, *RUN_KEYS) if k in data}
    models = extra.get("models")
    if models is not None and not (isinstance(models, dict) and all(isinstance(v, str) for v in models.values())):
        raise ConfigError("config key models must map names to model folders (e.g. models: {base: FOLDER})")
    name = getattr(args, "model_name", None)
    if name is not None and getattr(args, "model", None):
        raise ConfigError("pass --model FOLDER or --model-name NAME, not both")
    if "models" not in extra_keys and (name is not None or (models and not data.get("model"))):
        data["model"] = pick_model(models, name or "base")
    return build(ExperimentConfig, data), extra


def check_method_name(method: str, where: str = "--method", plain: bool = False) -> str:
    """A method name becomes file names (``METHOD.gmmlu.json``) in ``--out``: no path in it. ``plain`` (a model
    of ``run``'s ``models:``): no ``+`` either, which joins a model and its steering (``base+SUR``)."""
    from jaxsteer.errors import ConfigError

    bad = not isinstance(method, str) or not method or method.strip() != method or method in (".", "..")
    if bad or any(c in method for c in "/\\\0") or (plain and "+" in method):
        if plain:  # run's models: a model name, which its steered results extend with +EN, +SUR, …
            raise ConfigError(
                f"{where} {method!r} is not a model name for result files (no '+', which joins a model and its "
                "steering as in base+SUR; no / \\ or surrounding spaces)"
            )
        raise ConfigError(f"{where} {method!r}: a name for result files, without / \\ or surrounding spaces")
    return method


def pick_model(models: dict | None, name: str) -> str:
    """The folder of model ``name`` in a config's ``models:`` mapping."""
    from jaxsteer.errors import ConfigError

    if not models:
        raise ConfigError(f"--model-name {name}: the config has no `models:` to pick from (pass --model FOLDER)")
    if name not in models:
        raise ConfigError(
            f"no model named {name!r} in the config's models ({', '.join(models)}); pick one with --model-name"
        )
    return models[name]


def load_model(args_or_cfg):
    from jaxsteer.checkpoint.hf import load_pretrained
    from jaxsteer.errors import ConfigError

    source = getattr(args_or_cfg, "model", None)
    if not source:
        raise ConfigError("no model given: pass --model FOLDER or set `model:` in the config")
    use_compilation_cache()
    return load_pretrained(
        source,
        dtype=getattr(args_or_cfg, "dtype", None) or "bfloat16",
        mesh=getattr(args_or_cfg, "mesh", None),
        batch_size=getattr(args_or_cfg, "batch_size", None),
        decode_layout=getattr(args_or_cfg, "decode_layout", None) or "auto",
    )


def add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an --out holding results of another model or seed, or files of an earlier call this one "
        "replaces: they move to OUT/replaced-DATE/",
    )


def claim_results(out: str, model, seed: int, overwrite: bool, planned_files=()):
    """The results folder ``out`` for this model and seed (see :class:`jaxsteer.outputs.ResultsFolder`)."""
    from jaxsteer.outputs import ResultsFolder, model_identity

    writer = {"model": model_identity(model.source), "config_hash": model.config.config_hash(), "seed": seed}
    return ResultsFolder.claim(out, writer, overwrite=overwrite, planned_files=planned_files, keep_earlier=True)


def use_compilation_cache() -> None:
    """Keep compiled XLA programs on disk (``$XDG_CACHE_HOME/jaxsteer/xla``) unless the user chose a cache.

    Every command that runs a model uses it: a rerun, a resumed run or another language set loads the
    programs instead of compiling them again (a 12B decode loop compiles in 7–18 s; the demo's three
    alignment seeds compile the same train steps: a first demo on 2 CPU cores took 5.3 min without the
    cache, 4.1–4.6 min with it)."""
    import os

    import jax

    if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    jax.config.update("jax_compilation_cache_dir", os.path.join(root, "jaxsteer", "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def add_steer_args(p, scope: bool = False) -> None:
    """``--steer FILE:LAYER:GAMMA`` (repeatable) and ``--force``; ``scope``: also ``--scope`` (generation)."""
    p.add_argument(
        "--steer",
        action="append",
        metavar="FILE:LAYER:GAMMA",
        help="add γ·v[layer] from a vector file (repeatable; e.g. en.safetensors:20:2)",
    )
    p.add_argument("--force", action="store_true", help="apply vectors made for another config hash")
    if scope:
        p.add_argument(
            "--scope",
            choices=("all", "prompt", "generated"),
            default="all",
            help="where --steer adds: every position (default), the prompt's, or the generated tokens'",
        )


def parse_steer(items, config, force: bool, scope: str = "all", languages=()):
    """The ``--steer`` items as one plan (None without any): each file checked against the model first (and a
    note when it was extracted from other ``languages`` than those it will steer)."""
    from jaxsteer.errors import ConfigError
    from jaxsteer.steering.vectors_io import check_compatible, check_nonzero_at, load_vectors
    from jaxsteer.study.experiment import check_gamma
    from jaxsteer.study.surgical import combined_steering

    parts = []
    for item in items or []:
        try:
            path, layer, gamma = item.rsplit(":", 2)
            layer, gamma = int(layer), float(gamma)
        except ValueError:
            raise ConfigError(f"--steer {item!r}: expected FILE:LAYER:GAMMA") from None
        check_gamma(gamma, f"--steer {item!r}")
        vset = load_vectors(path)
        check_compatible(vset, config, force=force)
        from jaxsteer.steering.plan import check_layer

        check_layer(layer, config.num_layers)
        check_nonzero_at(vset, [layer], path)
        note_other_languages(vset, path, languages)
        parts.append((vset.vectors, layer, gamma))
    return combined_steering(config, parts, scope) if parts else None


def note_other_languages(vset, path: str, languages) -> None:
    """One stderr line when a vector file made from some languages' pairs is applied to others (``en_ko``
    steering zh): allowed — transfer across languages is a question one may ask — but never unnoticed."""
    import sys

    made_for = tuple(vset.meta.languages)
    others = [lang for lang in languages if made_for and lang not in made_for]
    if others:
        print(
            f"note: {path} holds vectors extracted from {', '.join(made_for)} pairs; applying them to "
            f"{', '.join(others)} too",
            file=sys.stderr,
        )
