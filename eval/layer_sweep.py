"""Layer × γ sweep of an EN vector on Dev2 Global-MMLU (one shared-prefix compiled call per chunk).

usage: python eval/layer_sweep.py CONFIG.yaml VECTORS.safetensors [--layers 10,15,20] [--gammas 0,1,2,4]
(equivalent to `jaxsteer sweep --config CONFIG --vectors VECTORS ...`).
"""

import sys

from jaxsteer.cli import main

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(["sweep", "--config", sys.argv[1], "--vectors", sys.argv[2], *sys.argv[3:]]))
