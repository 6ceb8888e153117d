"""Train the MIST baseline — multilingual instruction fine-tuning (response-token NLL on OpenAssistantXX, LoRA).

usage: python train/mist.py [--config configs/cla/mist.yaml] [--set KEY=VALUE ...] [--resume] [--out DIR]
(equivalent to `jaxsteer train --config configs/cla/mist.yaml ...`; configs/cla/tiny_mist.yaml runs on CPU).
"""

import sys

from jaxsteer.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--config" not in args:
        args = ["--config", "configs/cla/mist.yaml", *args]
    sys.exit(main(["train", *args]))
