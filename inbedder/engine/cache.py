"""Where converted models and digests are cached (INBEDDER_CACHE overrides)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = Path(os.environ.get("INBEDDER_CACHE") or Path.home() / ".cache" / "inbedder")
    root.mkdir(parents=True, exist_ok=True)
    return root
