"""Put this checkout's src/ first on sys.path, so jobs (local, cluster or conda) use its mmgate."""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
