"""The paper's main experiment: base and CLA models, EN/LOC/SUR steering, Δ tables and the plane.

usage: python eval/transfer_localization.py configs/experiments/sur_gemma3_12b.yaml [--set key=value ...]
(equivalent to `jaxsteer run --config ...`).
"""

import sys

from jaxsteer.cli import main

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(["run", "--config", sys.argv[1], *sys.argv[2:]]))
