"""``jaxsteer info``: what a checkpoint folder holds, read from its config (no weights loaded)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="show the Gemma-3 config of a checkpoint folder")
    p.add_argument("model", help="HF Gemma-3 folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxsteer.checkpoint.hf import resolve_folder, weight_files
    from jaxsteer.config import GemmaConfig

    folder = resolve_folder(args.model)
    cfg = GemmaConfig.from_hf(folder)
    files = weight_files(folder)
    info = cfg.to_dict() | {"config_hash": cfg.config_hash(), "params": cfg.num_params(), "weight_files": len(files)}
    print(json.dumps(info, indent=2))
    return 0
