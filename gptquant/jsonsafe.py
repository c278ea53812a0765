"""The one NaN -> None JSON cleaner: what the project writes as JSON (summaries, analysis, run history) must
parse back with any JSON reader, and `json.dumps` would otherwise write `NaN`, which strict readers refuse."""
from __future__ import annotations

import datetime as _dt
import math

import numpy as np


def json_safe(obj):
    """Nested dicts/lists/tuples as plain JSON values: numpy scalars unwrapped, NaN/inf -> None, timestamps
    as ISO text (a date when at midnight, as sessions are), keys as strings."""
    if isinstance(obj, dict):
        return {_key(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.datetime64, _dt.date)):
        return _iso(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def finite_floats(values: dict) -> dict:
    """A metrics dict as floats, NaN/inf -> None (backtest summaries)."""
    return {k: json_safe(float(v)) for k, v in values.items()}


def _iso(t):
    import pandas as pd

    if pd.isna(t):
        return None
    t = pd.Timestamp(t)
    return t.date().isoformat() if t == t.normalize() else t.isoformat()


def _key(k) -> str:
    if isinstance(k, (np.datetime64, _dt.date)):
        return str(_iso(k))
    if isinstance(k, np.generic):
        k = k.item()
    return str(k)
