"""Hashes of source code, for keys that must change when the code that produced a result changes.

A resumed backtest or a cached result is only right if the code is the same: the installed gptquant's
own modules (an upgrade, or an edit of a checkout) and the project modules a strategy imports.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def package_hash() -> str:
    """sha256 over every .py file of the installed gptquant package (relative path and bytes)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:24]
