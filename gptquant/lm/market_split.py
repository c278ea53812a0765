"""Market-labelled tables for training (`train sentiment --labels market`): split by time, never at random,
and cut the excess return into negative / neutral / positive with thresholds taken from the training rows only.

A random split of market-labelled news leaks: news of the same days (one market move) sits on both sides,
and thresholds computed over all rows use the validation period's returns. Here the training rows are
those whose time is before `valid_from`, validation rows those from `valid_from` to `valid_until`
(exclusive), and rows from `valid_until` on are left out (counted, never used). A training row whose label
needs prices from the validation period (its `exit_session` on or after `valid_from`; only with a horizon
over one session) is purged, and counted.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..features.labels import LABELS
from .data import read_table

DEFAULT_QUANTILES = (1 / 3, 2 / 3)  # terciles of the training period's excess returns


def _times(name: str, df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        raise GptquantError(f"{name}: no {column!r} column to split by time (found {list(df.columns)})")
    t = pd.to_datetime(df[column], errors="coerce", format="mixed")
    bad = np.flatnonzero(t.isna().to_numpy())
    if len(bad):
        raise GptquantError(f"{name}: row {bad[0] + 1}: unreadable {column!r} {df[column].iloc[bad[0]]!r}")
    return t


def thresholds(returns, quantiles=DEFAULT_QUANTILES) -> tuple[float, float]:
    """(down, up): the excess returns at the two quantiles (terciles by default) of the given rows."""
    lo, hi = (float(q) for q in quantiles)
    if not 0 < lo <= hi < 1:
        raise GptquantError(f"quantiles must satisfy 0 < low <= high < 1, got {quantiles}")
    r = np.asarray(returns, dtype="float64")
    if len(r) == 0:
        raise GptquantError("no training rows to choose thresholds from")
    return float(np.quantile(r, lo)), float(np.quantile(r, hi))


def cut(returns, down: float, up: float) -> np.ndarray:
    """Label names by the rule of `label market`: below down negative, above up positive, else neutral."""
    r = np.asarray(returns, dtype="float64")
    return np.where(r < down, LABELS[0], np.where(r > up, LABELS[2], LABELS[1]))


def time_split(source, valid_from, valid_until=None, *, time_column: str | None = None):
    """(train, validation, info): rows before `valid_from` train, rows from it to `valid_until` (exclusive)
    validate, later rows are left out; by `time_column` (default `session` when present, else `datetime`).
    Training rows whose `exit_session` falls on or after `valid_from` are purged."""
    name, df = read_table(source)
    column = time_column or ("session" if "session" in df.columns else "datetime")
    t = _times(name, df, column)
    start = pd.Timestamp(valid_from)
    end = pd.Timestamp(valid_until) if valid_until is not None else None
    if end is not None and end <= start:
        raise GptquantError(f"valid_until {end.date()} must come after valid_from {start.date()}")
    train = (t < start).to_numpy().copy()
    purged = np.zeros(len(df), dtype=bool)
    if "exit_session" in df.columns:
        purged = train & (_times(name, df, "exit_session") >= start).to_numpy()
        train &= ~purged
    valid = (t >= start).to_numpy() & ((t < end).to_numpy() if end is not None else True)
    if not train.any() or not valid.any():
        raise GptquantError(f"{name}: split at {start.date()} leaves {int(train.sum())} training and "
                            f"{int(valid.sum())} validation rows; both must be non-empty")
    frame = df.assign(**{column: t})
    tr, va = frame[train].reset_index(drop=True), frame[valid].reset_index(drop=True)
    info = {"time_column": column, "valid_from": str(start.date()), "valid_until": str(end.date()) if end is not None else None,
            "n_train": len(tr), "n_valid": len(va), "n_after": int(len(df) - train.sum() - valid.sum() - purged.sum()),
            "n_purged": int(purged.sum()), "train_range": [str(tr[column].min()), str(tr[column].max())],
            "valid_range": [str(va[column].min()), str(va[column].max())]}
    return tr, va, info


def market_split(source, valid_from, valid_until=None, *, time_column: str | None = None,
                 quantiles=DEFAULT_QUANTILES) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """time_split of a `label market` table, its `label` recomputed from `excess_return` with thresholds at
    the training rows' quantiles (terciles by default). info adds the thresholds and the label counts."""
    name, df = read_table(source)
    if "excess_return" not in df.columns:
        raise GptquantError(f"{name}: no 'excess_return' column (make the table with `gptquant label market`)")
    ex = pd.to_numeric(df["excess_return"], errors="coerce")
    bad = np.flatnonzero(~np.isfinite(ex.to_numpy(dtype="float64")))
    if len(bad):
        raise GptquantError(f"{name}: row {bad[0] + 1}: excess_return {df['excess_return'].iloc[bad[0]]!r} is not a number")
    tr, va, info = time_split(df.assign(excess_return=ex), valid_from, valid_until, time_column=time_column)
    down, up = thresholds(tr["excess_return"], quantiles)
    tr, va = (f.assign(label=cut(f["excess_return"], down, up)) for f in (tr, va))
    info.update(quantiles=[float(q) for q in quantiles], down=down, up=up,
                train_counts={k: int((tr["label"] == k).sum()) for k in LABELS},
                valid_counts={k: int((va["label"] == k).sum()) for k in LABELS})
    return tr, va, info


def describe(info: dict) -> str:
    """A few lines for the CLI: where the split fell and, for market labels, the training period's thresholds."""
    counts = lambda k: (": " + ", ".join(f"{a} {b}" for a, b in info[k].items())) if k in info else ""  # noqa: E731
    tr, va = info["train_range"], info["valid_range"]
    text = (f"split by {info['time_column']} at {info['valid_from']}: train {info['n_train']} rows "
            f"({tr[0][:10]}..{tr[1][:10]}{counts('train_counts')}), validation {info['n_valid']} rows "
            f"({va[0][:10]}..{va[1][:10]}{counts('valid_counts')}); {info['n_after']} later rows left out, "
            f"{info['n_purged']} training rows purged (their label uses validation-period prices)")
    if "down" in info:
        text += (f"\nthresholds from the training rows only (quantiles {info['quantiles'][0]:.3f}, "
                 f"{info['quantiles'][1]:.3f} of excess return): negative < {info['down']:+.4%}, "
                 f"positive > {info['up']:+.4%}")
    return text
