"""Bars + panel -> one backtrader feed per instrument, all on the same XSHG session grid.

Aligning every feed to the calendar keeps backtrader's clock simple (every `next()` is one session for
every instrument, an IPO mid-run does not stall the strategy in `prenext`) and makes suspensions
explicit: a session with no bar gets the previous close as open/high/low/close, volume 0 and
`suspended` = 1, so positions keep their last price and the broker refuses to trade. Sessions before
an instrument's first bar are NaN with `suspended` = 1.
"""
from __future__ import annotations

import functools
import keyword
from array import array
from dataclasses import dataclass

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


@dataclass
class Aligned:
    """Every instrument's lines on one session grid: block is session x instrument x line."""

    grid: pd.DatetimeIndex
    names: list
    lines: list
    block: np.ndarray

    def feed_data(self) -> dict[str, tuple]:
        """What each feed preloads: (backtrader day numbers, line names, session x line values)."""
        days = self.grid.values.astype("datetime64[D]").astype(np.int64) + _EPOCH_ORDINAL
        return {name: (days, self.lines, self.block[:, j, :]) for j, name in enumerate(self.names)}


def align(bars: pd.DataFrame, grid: pd.DatetimeIndex, panel: pd.DataFrame | None = None) -> Aligned:
    """Price, rule and feature lines for every instrument on the session grid."""
    bars = bars.reset_index(drop=True)
    bars = pd.concat([bars, price_limits(bars)], axis=1)  # before trimming: the first session needs the bar before it
    if "pre_close" not in bars.columns:
        bars["pre_close"] = bars.groupby("instrument", sort=False)["close"].shift(1)
    bars = bars[bars["datetime"].between(grid[0], grid[-1])]
    if bars.empty:
        raise GptquantError(f"bars: nothing between {grid[0].date()} and {grid[-1].date()}")
    names = sorted(bars["instrument"].unique())
    rows, cols = grid.get_indexer(bars["datetime"]), pd.Index(names).get_indexer(bars["instrument"])
    if pd.Index(rows * len(names) + cols).has_duplicates:
        dup = bars[pd.Series(rows * len(names) + cols).duplicated().to_numpy()].iloc[0]
        raise GptquantError(f"bars: more than one bar for {dup['instrument']} on {dup['datetime'].date()}")

    def wide(col):
        out = np.full((len(grid), len(names)), np.nan)
        out[rows, cols] = bars[col].to_numpy(dtype=float)
        return out

    close = wide("close")
    traded = ~np.isnan(close) & (wide("volume") > 0)
    last = pd.DataFrame(np.where(traded, close, np.nan)).ffill().to_numpy()  # a zero-volume bar is a suspension too: carry the last traded close
    out_cols = {"close": last}
    for col in ("open", "high", "low"):
        out_cols[col] = np.where(traded, wide(col), last)
    out_cols["volume"] = np.where(traded, wide("volume"), 0.0)
    out_cols["openinterest"] = np.zeros((len(grid), len(names)))
    for col in ("pre_close", "up_limit", "down_limit"):
        out_cols[col] = np.where(traded, wide(col), np.nan)
    out_cols["suspended"] = (~traded).astype(float)

    features = PanelArrays(panel, grid, names)
    for col in features:
        out_cols[col] = features[col]
    block = np.stack([np.asarray(w, dtype=float) for w in out_cols.values()], axis=2)
    return Aligned(grid, names, list(out_cols), block)


class PanelArrays:
    """Panel features as session x instrument float arrays on the feeds' grid (NaN where the panel has no row),
    each built on first use: a strategy reading one column of a 40-column panel pays for one."""

    def __init__(self, panel: pd.DataFrame | None, grid: pd.DatetimeIndex, names: list[str]):
        self.columns = feature_columns(panel)
        self._grid, self._names, self._arrays = grid, list(names), {}
        if self.columns:
            at = panel.index
            self._panel = panel[at.get_level_values("datetime").isin(grid) & at.get_level_values("instrument").isin(self._names)]

    def __contains__(self, column) -> bool:
        return column in self.columns

    def __iter__(self):
        return iter(self.columns)

    def __getitem__(self, column) -> np.ndarray:
        if column not in self._arrays:
            if column not in self.columns:
                raise KeyError(column)
            wide = self._panel[column].astype(float).unstack("instrument") if len(self._panel) else pd.DataFrame()
            self._arrays[column] = wide.reindex(index=self._grid, columns=self._names).to_numpy(dtype=float)
        return self._arrays[column]

    def rows(self) -> pd.DataFrame:
        """The panel rows on the grid and the instruments, (datetime, instrument)-sorted: what the strategy can see."""
        return self._panel.sort_index() if self.columns else pd.DataFrame()


class _Clock:
    """The one position every line of a feed is at: the feeds are preloaded on one grid, so moving a feed
    forward is one increment instead of one per line (backtrader's per-line advance dominated runs with
    hundreds of instruments)."""

    __slots__ = ("i",)

    def __init__(self):
        self.i = -1


@functools.cache
def _shared_clock_line():
    """A LineBuffer whose index and length come from its feed's _Clock (preloaded, unbounded mode only)."""
    from backtrader.linebuffer import LineBuffer

    class ClockedLine(LineBuffer):
        def get_idx(self):
            return self._gq_clock.i

        def set_idx(self, idx, force=False):
            self._gq_clock.i = idx

        idx = property(get_idx, set_idx)
        lencount = property(lambda self: self._gq_clock.i + 1, lambda self, n: setattr(self._gq_clock, "i", n - 1))

        def __getitem__(self, ago):
            return self.array[self._gq_clock.i + ago]

    return ClockedLine


def _fast_preload(self):
    """Copy the aligned values straight into the line buffers and tie every line to one clock."""
    days, names, values = self.p.dataname
    clock = _Clock()
    line_class = _shared_clock_line()
    where = {c: i for i, c in enumerate(names)}
    for alias, buf in zip(self.lines.getlinealiases(), self.lines.lines):
        if alias == "datetime":
            line = days
        elif alias in where:
            line = values[:, where[alias]]
        else:
            line = np.full(len(days), np.nan)
        buf.array = array("d", np.ascontiguousarray(line, dtype=float).tobytes())
        buf.__class__, buf._gq_clock = line_class, clock
    self._gq_clock, self._dates = clock, self.lines.datetime.array
    clock.i = len(days) - 1
    self._last()
    self.home()


def _fast_advance(self, size=1, datamaster=None, ticks=True):
    """Every feed is on the same session grid: advancing is moving the clock (no tick_* fields: the A-share
    broker reads the lines)."""
    self._gq_clock.i += size


def _fast_peek(self):
    i = self._gq_clock.i + 1
    return self._dates[i] if i < len(self._dates) else float("inf")


def feed_class(features: list[str]):
    """A backtrader feed class whose lines are the prices, the A-share rule columns and every panel feature;
    `dataname` is one entry of Aligned.feed_data() (no per-instrument DataFrame, no column guessing)."""
    import backtrader as bt

    lines = (*EXTRA_LINES, *features)
    return type("AShareData", (bt.feed.DataBase,), {
        "__doc__": "Preloaded lines for one instrument: prices, A-share rule columns and panel features.",
        "lines": lines,
        "preload": _fast_preload,
        "advance": _fast_advance,
        "advance_peek": _fast_peek,
        "_load": lambda self: False,  # everything is preloaded
    })
