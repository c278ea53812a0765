"""`data` in BigQuant-style callbacks: current(), history(), can_trade(), current_dt — never beyond what is known.

Before the open a callback sees the last completed bar (D-1) for prices and volume, and D's suspension
flag, price limits and panel row (known before the open); after the close it sees D's bar. history()
answers positional `s[-1]` like the pandas BigQuant ran on (pandas 3 reads `s[-1]` as a date label).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import GptquantError
from .assets import canonical

PRICE_FIELDS = ("open", "high", "low", "close", "volume", "price")
PRE_OPEN_FIELDS = ("suspended", "up_limit", "down_limit", "pre_close")  # known before the session opens


class HistorySeries(pd.Series):
    """A Series whose integer keys are positions when its index is not made of integers (s[-1] is the last bar)."""

    @property
    def _constructor(self):
        return HistorySeries

    @property
    def _constructor_expanddim(self):
        return HistoryFrame

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) \
                and not pd.api.types.is_integer_dtype(self.index):
            return self.iloc[key]
        return super().__getitem__(_code_key(self.index, key))


class HistoryFrame(pd.DataFrame):
    """A DataFrame whose columns are HistorySeries; a code column answers to any spelling ('600519.SHA')."""

    @property
    def _constructor(self):
        return HistoryFrame

    @property
    def _constructor_sliced(self):
        return HistorySeries

    def __getitem__(self, key):
        return super().__getitem__(_code_key(self.columns, key))


def _code_key(labels, key):
    """An instrument code in another spelling than the labels' canonical one is looked up canonically."""
    if isinstance(key, str) and not isinstance(labels, pd.MultiIndex) and key not in labels:
        try:
            return canonical(key)
        except GptquantError:
            return key
    return key


class BarData:
    """`data` in the callbacks."""

    def __init__(self, strat, ctx, panel_at):
        self._strat, self._ctx, self._panel_at = strat, ctx, panel_at
        self._feeds = {d._name: d for d in strat.datas}
        self._column = {d._name: j for j, d in enumerate(strat.datas)}
        self._panel = strat.env.panel_arrays  # feature -> session x instrument, on the feeds' grid
        self._features = list(self._panel)

    @property
    def current_dt(self) -> pd.Timestamp:
        return pd.Timestamp(self._strat.data.datetime.date(0))

    def _ago(self, field) -> int:
        if self._ctx._phase == "close" or field in PRE_OPEN_FIELDS:
            return 0
        if field in self._features:
            return 0 if self._panel_at == "open" else -1
        return -1

    def _line(self, field):
        name = "close" if field == "price" else field
        if name not in (*PRICE_FIELDS, *PRE_OPEN_FIELDS, *self._features):
            raise GptquantError(f"unknown field {field!r}; fields: {', '.join((*PRICE_FIELDS, *PRE_OPEN_FIELDS, *self._features))}")
        return name

    def _feed(self, asset):
        feed = self._feeds.get(asset) if type(asset) is str else None  # a canonical code: no parse (~1M calls a run)
        if feed is not None:
            return feed
        try:
            return self._feeds[canonical(asset)]
        except (GptquantError, KeyError):
            raise GptquantError(f"{asset!r} is not in this backtest's instruments") from None

    def _value(self, asset, field) -> float:
        feed = self._feed(asset)
        ago = self._ago(field)
        if len(feed) + ago < 1:  # nothing known yet (line[-1] on the first bar would wrap around)
            return math.nan
        if field in self._panel:
            return float(self._panel[field][len(feed) - 1 + ago, self._column[feed._name]])
        return getattr(feed.lines, self._line(field))[ago]

    def last_sale_date(self, asset):
        """The session of the last known traded bar (D after the close, D-1 before the open; earlier if suspended)."""
        feed = self._feed(asset)
        i = feed.lines.datetime.idx + (0 if self._ctx._phase == "close" else -1)
        suspended = feed.lines.suspended.array
        while i >= 0 and suspended[i]:
            i -= 1
        if i < 0:
            return None
        return pd.Timestamp(int(feed.lines.datetime.array[i]) - 719163, unit="D")

    def current(self, assets, fields):
        """A float for one asset and field; a Series over assets or fields; a DataFrame for both lists."""
        one_asset, one_field = isinstance(assets, str), isinstance(fields, str)
        if one_asset and one_field:
            return self._value(assets, fields)
        assets = [assets] if one_asset else list(assets)
        fields = [fields] if one_field else list(fields)
        frame = HistoryFrame({f: [self._value(a, f) for a in assets] for f in fields},
                             index=[canonical(a) for a in assets])
        if one_field:
            return frame[fields[0]]
        return frame.iloc[0] if one_asset else frame

    def can_trade(self, asset) -> bool:
        """Listed and not suspended this session (price limits are judged at the fill)."""
        feed = self._feed(asset)
        return not feed.suspended[0] and feed.close[0] > 0

    def is_stale(self, asset) -> bool:
        """zipline: no trade in the last known bar (suspended)."""
        return not self.can_trade(asset)

    def history(self, assets, fields, bar_count: int, frequency: str = "1d"):
        """The last bar_count completed sessions (ending D in handle_data, D-1 before the open)."""
        if frequency not in ("1d", "daily", "1day"):
            raise GptquantError(f"only daily history is available, got frequency={frequency!r}")
        end_ago = 0 if self._ctx._phase == "close" else -1
        one_asset, one_field = isinstance(assets, str), isinstance(fields, str)
        assets = [assets] if one_asset else list(assets)
        fields = [fields] if one_field else list(fields)
        feeds = [self._feed(a) for a in assets]
        stop = feeds[0].lines.datetime.idx + end_ago + 1  # every feed is on the same session grid
        begin = max(0, stop - int(bar_count))
        stop = max(stop, begin)
        days = np.asarray(feeds[0].lines.datetime.array[begin:stop], dtype=np.int64) - 719163
        index = pd.DatetimeIndex(days.astype("datetime64[D]").astype("datetime64[ns]"), name="datetime")

        def values(feed, f):
            if f in self._panel:
                return np.asarray(self._panel[f][begin:stop, self._column[feed._name]], dtype=float)
            return np.asarray(getattr(feed.lines, self._line(f)).array[begin:stop], dtype=float)

        if one_asset:
            frame = HistoryFrame({f: values(feeds[0], f) for f in fields}, index=index)
            return frame[fields[0]].rename(feeds[0]._name) if one_field else frame
        if one_field:
            return HistoryFrame({feed._name: values(feed, fields[0]) for feed in feeds}, index=index)
        return HistoryFrame({(f, feed._name): values(feed, f) for f in fields for feed in feeds}, index=index)
