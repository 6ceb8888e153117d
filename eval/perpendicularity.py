"""S_PER(EN, LOC) by layer and the layer-wise PCA convergence figure.

usage: python eval/perpendicularity.py CONFIG.yaml EN.safetensors LOC.safetensors [--pca]
(equivalent to `jaxsteer analyze --config CONFIG --a EN --b LOC [--pca]`).
"""

import sys

from jaxsteer.cli import main

if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sys.exit(main(["analyze", "--config", sys.argv[1], "--a", sys.argv[2], "--b", sys.argv[3], *sys.argv[4:]]))
