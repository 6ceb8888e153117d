"""Test-only: ``python tests/kill_after_step.py CONFIG.yaml STEP`` trains CONFIG and SIGKILLs itself after STEP.

A real training process dying hard (no cleanup, no final save, an async checkpoint possibly cut short),
driven through the trainer's ``on_step`` callback so production code carries no crash switch.
"""

from __future__ import annotations

import os
import signal
import sys


def kill_after(step: int):
    def on_step(done: int, row: dict) -> None:
        if done == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return on_step


def main(argv: list[str]) -> int:
    from jaxsteer.cla import config as cla_config
    from jaxsteer.cla.trainer import train

    path, step = argv
    train(cla_config.load(path), on_step=kill_after(int(step)))
    return 0  # only reached when STEP is past the last step


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
