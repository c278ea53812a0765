"""Bars + panel -> one backtrader feed per instrument, all on the same XSHG session grid.

Aligning every feed to the calendar keeps backtrader's clock simple (every `next()` is one session for
every instrument, an IPO mid-run does not stall the strategy in `prenext`) and makes suspensions
explicit: a session with no bar gets the previous close as open/high/low/close, volume 0 and
`suspended` = 1, so positions keep their last price and the broker refuses to trade. Sessions before
an instrument's first bar are NaN with `suspended` = 1.
"""
from __future__ import annotations

import keyword
from array import array

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..market.calendar import sessions as xshg_sessions
from ..market.prices import price_limits

BASE_LINES = ("open", "high", "low", "close", "volume", "openinterest", "datetime")
EXTRA_LINES = ("pre_close", "up_limit", "down_limit", "suspended")
_EPOCH_ORDINAL = 719163  # backtrader's date2num(1970-01-01)


def session_grid(bars: pd.DataFrame, start=None, end=None) -> pd.DatetimeIndex:
    """XSHG sessions covering the run; bars dated on a non-session are an error (bad data, not a holiday bar)."""
    start = pd.Timestamp(start) if start is not None else bars["datetime"].min()
    end = pd.Timestamp(end) if end is not None else bars["datetime"].max()
    grid = xshg_sessions(start, end)
    if len(grid) == 0:
        raise GptquantError(f"no XSHG sessions between {start.date()} and {end.date()}")
    inside = bars["datetime"].between(grid[0], grid[-1])
    off = inside & ~bars["datetime"].isin(grid)
    if off.any():
        row = bars[off].iloc[0]
        raise GptquantError(f"bars: {int(off.sum())} bar(s) on days that are not XSHG sessions, e.g. "
                            f"{row['instrument']} on {row['datetime'].date()}")
    return grid


def feature_columns(panel: pd.DataFrame | None) -> list[str]:
    """Panel columns that become feed lines; names must be identifiers that do not shadow a price line."""
    if panel is None:
        return []
    if not isinstance(panel.index, pd.MultiIndex) or list(panel.index.names) != ["datetime", "instrument"]:
        raise GptquantError(f"panel must be indexed by (datetime, instrument), got {list(panel.index.names)}")
    cols = []
    for c in panel.columns:
        name = str(c)
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise GptquantError(f"panel column {c!r} cannot be a feed line: use a Python identifier")
        if name in BASE_LINES or name in EXTRA_LINES:
            raise GptquantError(f"panel column {c!r} clashes with a price line of the same name; rename it")
        if not (pd.api.types.is_numeric_dtype(panel[c]) or pd.api.types.is_bool_dtype(panel[c])):
            raise GptquantError(f"panel column {c!r} is not numeric ({panel[c].dtype})")
        cols.append(name)
    return cols


def align(bars: pd.DataFrame, grid: pd.DatetimeIndex, panel: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """One DataFrame per instrument indexed by the session grid, with price, rule and feature columns."""
    bars = bars.reset_index(drop=True)
    bars = pd.concat([bars, price_limits(bars)], axis=1)  # before trimming: the first session needs the bar before it
    if "pre_close" not in bars.columns:
        bars["pre_close"] = bars.groupby("instrument", sort=False)["close"].shift(1)
    bars = bars[bars["datetime"].between(grid[0], grid[-1])]
    if bars.empty:
        raise GptquantError(f"bars: nothing between {grid[0].date()} and {grid[-1].date()}")
    names = sorted(bars["instrument"].unique())

    def wide(col):
        return bars.pivot(index="datetime", columns="instrument", values=col).reindex(index=grid, columns=names)

    close = wide("close")
    traded = close.notna() & (wide("volume") > 0)
    last = close.where(traded).ffill()  # a zero-volume bar is a suspension too: carry the last traded close
    out_cols = {"close": last}
    for col in ("open", "high", "low"):
        out_cols[col] = wide(col).where(traded, last)
    out_cols["volume"] = wide("volume").where(traded, 0.0)
    out_cols["openinterest"] = pd.DataFrame(0.0, index=grid, columns=names)
    for col in ("pre_close", "up_limit", "down_limit"):
        out_cols[col] = wide(col).where(traded)
    out_cols["suspended"] = (~traded).astype(float)

    features = feature_columns(panel)
    if features:
        p = panel[features]
        p = p[p.index.get_level_values("datetime").isin(grid) & p.index.get_level_values("instrument").isin(names)]
        for col in features:
            out_cols[col] = p[col].astype(float).unstack("instrument").reindex(index=grid, columns=names)

    frames = {}
    for name in names:
        frames[name] = pd.DataFrame({col: w[name].to_numpy(dtype=float) for col, w in out_cols.items()}, index=grid)
    return frames


def _fast_preload(self):
    """Copy the frame's columns straight into the line buffers (backtrader's row-by-row iloc load is ~100x slower)."""
    df = self.p.dataname
    n = len(df)
    for alias in self.lines.getlinealiases():
        buf = getattr(self.lines, alias)
        if alias == "datetime":
            values = df.index.values.astype("datetime64[D]").astype(np.int64) + _EPOCH_ORDINAL
        elif alias in df.columns:
            values = df[alias].to_numpy()
        else:
            values = np.full(n, np.nan)
        buf.array = array("d", np.asarray(values, dtype=float).tobytes())
        buf.idx, buf.lencount = n - 1, n
    self._last()
    self.home()


def feed_class(features: list[str]):
    """A PandasData subclass whose lines are the A-share rule columns plus every panel feature."""
    import backtrader as bt

    lines = (*EXTRA_LINES, *features)
    return type("AShareData", (bt.feeds.PandasData,), {
        "__doc__": "PandasData with lines for the A-share rules and each panel feature.",
        "lines": lines,
        "params": tuple((name, -1) for name in lines),
        "preload": _fast_preload,
    })
