"""jaxsteer: find and apply steering vectors in Gemma-3, and measure what they do across languages."""

__version__ = "0.1.0"

from jaxsteer.checkpoint.hf import load_pretrained, save_pretrained
from jaxsteer.config import GemmaConfig
from jaxsteer.model.decode import generate
from jaxsteer.model.model import Model, forward
from jaxsteer.steering.plan import Steering

__all__ = [
    "GemmaConfig",
    "Model",
    "Steering",
    "forward",
    "generate",
    "load_pretrained",
    "save_pretrained",
    "__version__",
]
