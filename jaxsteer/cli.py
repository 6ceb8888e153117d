"""``jaxsteer`` command line: one sub-command per module in ``jaxsteer.commands``.

A user mistake (any ``JaxsteerError``) prints one line and exits with status 2; results are
written atomically, so an interrupted or failed command leaves no partial file behind. Ctrl-C exits
with status 130 and says what was written (:mod:`jaxsteer.interrupt`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jaxsteer import interrupt
from jaxsteer.errors import JaxsteerError

DESCRIPTION = (
    "Steer and align multilingual Gemma-3 models in JAX: extract steering vectors, sweep and select layers "
    "and γ, train cross-lingual alignment baselines, and evaluate transfer against localization "
    "(Global-MMLU, BLEnD)."
)
EPILOG = (
    "Start with `jaxsteer demo` (offline, a few minutes on a CPU). `jaxsteer COMMAND --help` lists a command's "
    "options; README.md shows every flow. A mistake in the input prints one line and exits with status 2."
)
COMMANDS = (
    "demo",
    "info",
    "data",
    "fixtures",
    "generate",
    "run",
    "extract",
    "sweep",
    "steer",
    "analyze",
    "eval",
    "plane",
    "train",
)


def build_parser() -> argparse.ArgumentParser:
    from jaxsteer import __version__

    parser = argparse.ArgumentParser(prog="jaxsteer", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"jaxsteer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"jaxsteer.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"jaxsteer.commands.{name}":
                continue  # a command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # transformers announces "PyTorch was not found" on import; jaxsteer needs only its tokenizers, so the
    # notice is noise on every command (a user who wants transformers' advice can set the variable to "").
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    own_process = argv is None  # the `jaxsteer` executable, not a caller's interpreter (jaxsteer/interrupt.py)
    if own_process:
        interrupt.install()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt as e:
        return interrupt.leave("jaxsteer", e, own_process)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except JaxsteerError as e:
        print(f"jaxsteer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        return interrupt.leave(f"jaxsteer {args.command}", e, own_process)
    except Exception as e:  # a Ctrl-C that landed inside a C++ callback comes back wrapped in another error
        cause = interrupt.cause(e)
        if cause is None:
            raise
        return interrupt.leave(f"jaxsteer {args.command}", cause, own_process)


if __name__ == "__main__":
    sys.exit(main())
