"""Train the MIDALIGN baseline — alternating task (NLL) and alignment (InfoNCE at block l_align on FLORES pairs) steps, LoRA.

usage: python train/midalign.py [--config configs/cla/midalign.yaml] [--set KEY=VALUE ...] [--resume] [--out DIR]
(equivalent to `jaxsteer train --config configs/cla/midalign.yaml ...`; configs/cla/tiny_midalign.yaml runs on CPU).
"""

import sys

from jaxsteer.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--config" not in args:
        args = ["--config", "configs/cla/midalign.yaml", *args]
    sys.exit(main(["train", *args]))
