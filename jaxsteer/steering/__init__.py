"""Steering vectors: the plan pytree, extraction, sweeps, analysis and vector files."""

from jaxsteer.steering.plan import Steering

__all__ = ["Steering"]
