"""A price file parsed once: load_bars' result kept as Parquet keyed by the file's hash.

Parsing a large price CSV every night would cost more than the rest of an incremental run; a changed file
has another hash, so a stale copy is never read (and older copies are removed).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write


def load_bars_cached(source, cache_dir, volume_unit: str = "shares", start=None) -> pd.DataFrame:
    """load_bars of a price file (bars from `start` on), through the Parquet copy in `cache_dir`. Folders of
    bar files are read directly."""
    from ..codehash import sha256_file
    from .prices import load_bars

    def since(bars):
        return bars if start is None else bars[bars["datetime"] >= start].reset_index(drop=True)

    source, cache_dir = Path(source), Path(cache_dir)
    if not source.is_file():
        return since(load_bars(source, volume_unit=volume_unit))
    stem = re.sub(r"\W", "_", source.stem)
    cached = cache_dir / f"bars-{stem}-{sha256_file(source)[:16]}-{volume_unit}.parquet"
    if cached.is_file():  # the filter is applied while reading, not on a copy of every bar
        return pd.read_parquet(cached, filters=None if start is None else [("datetime", ">=", pd.Timestamp(start))])
    bars = load_bars(source, volume_unit=volume_unit)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob(f"bars-{stem}-*-{volume_unit}.parquet"):
        old.unlink(missing_ok=True)  # keep only the latest version of this price file
    atomic_write(cached, lambda tmp: bars.to_parquet(tmp))
    return since(bars)
