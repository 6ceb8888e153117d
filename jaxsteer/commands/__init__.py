"""Sub-commands of the ``jaxsteer`` CLI: each module defines ``register(subparsers)``."""
