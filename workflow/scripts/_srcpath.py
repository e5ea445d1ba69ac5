"""Put the launching workflow's src/ first on sys.path, so jobs (local, cluster or conda) use its mmgate.

The Snakefile exports MMGATE_SRC (the checkout it was parsed from): a script run from Snakemake's
source cache, or an mmgate installed in the job's environment, must not decide which library runs.
"""

import os
import sys
from pathlib import Path

SRC = os.environ.get("MMGATE_SRC") or str(Path(__file__).resolve().parents[2] / "src")
if SRC in sys.path:
    sys.path.remove(SRC)
sys.path.insert(0, SRC)
