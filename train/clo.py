"""Train the CLO baseline — λ·NLL(target-language replies) + (1−λ)·DPO, attention q/k/v/o trained, cached reference log-probs.

usage: python train/clo.py [--config configs/cla/clo.yaml] [--set KEY=VALUE ...] [--resume] [--out DIR]
(equivalent to `jaxsteer train --config configs/cla/clo.yaml ...`; configs/cla/tiny_clo.yaml runs on CPU).
"""

import sys

from jaxsteer.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--config" not in args:
        args = ["--config", "configs/cla/clo.yaml", *args]
    sys.exit(main(["train", *args]))
