"""jaxsteer: find and apply steering vectors in Gemma-3, and measure what they do across languages."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The public names, loaded on first use (PEP 562): `import jaxsteer` — and so the `jaxsteer` command line,
# `jaxsteer --help` included — must not pay for importing JAX, Flax and transformers (seconds on a small CPU).
_EXPORTS = {
    "load_pretrained": "jaxsteer.checkpoint.hf",
    "save_pretrained": "jaxsteer.checkpoint.hf",
    "GemmaConfig": "jaxsteer.config",
    "generate": "jaxsteer.model.decode",
    "Model": "jaxsteer.model.model",
    "forward": "jaxsteer.model.model",
    "Steering": "jaxsteer.steering.plan",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxsteer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
