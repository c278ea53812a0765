"""Where gptquant keeps this user's caches (exported bundles, the score cache, the checkpoint signing key)."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GPTQUANT_CACHE"


def cache_dir() -> Path:
    """$GPTQUANT_CACHE, else ~/.cache/gptquant (not created here)."""
    base = os.environ.get(CACHE_ENV)
    return Path(base) if base else Path.home() / ".cache" / "gptquant"
