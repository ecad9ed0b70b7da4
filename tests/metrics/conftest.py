"""Let the metrics tests run from a plain checkout, without `pip install -e .`."""

import sys
from pathlib import Path

try:
    import evalmap  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
