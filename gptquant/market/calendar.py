"""The Shanghai exchange calendar (exchange_calendars' XSHG) and point-in-time session alignment.

A timestamp belongs to the first session whose cutoff it precedes: with the default 09:30 cutoff a
strategy trading at session D's open may use everything published before 09:30 on D, and news from
weekends and holidays rolls forward to the next session.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

TZ = "Asia/Shanghai"
DEFAULT_CUTOFF = "09:30"


@lru_cache(maxsize=1)
def xshg():
    import exchange_calendars as xcals

    return xcals.get_calendar("XSHG")


@lru_cache(maxsize=1)
def _all_sessions() -> pd.DatetimeIndex:
    return pd.DatetimeIndex(xshg().sessions.tz_localize(None) if xshg().sessions.tz is not None else xshg().sessions)


def sessions(start, end) -> pd.DatetimeIndex:
    """XSHG sessions in [start, end] as naive midnight timestamps."""
    s = _all_sessions()
    return s[(s >= pd.Timestamp(start).normalize()) & (s <= pd.Timestamp(end).normalize())]


def to_shanghai_naive(times) -> pd.DatetimeIndex:
    """Parse times; naive ones are Asia/Shanghai, aware ones are converted to it. Returns naive local times."""
    idx = pd.DatetimeIndex(pd.to_datetime(times))
    if idx.tz is not None:
        idx = idx.tz_convert(TZ).tz_localize(None)
    return idx


def _cutoff_offset(cutoff: str) -> pd.Timedelta:
    hh, mm = (int(x) for x in str(cutoff).split(":")[:2])
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise ValueError(f"cutoff must be HH:MM, got {cutoff!r}")
    return pd.Timedelta(hours=hh, minutes=mm)


def align_to_sessions(times, cutoff: str = DEFAULT_CUTOFF) -> pd.DatetimeIndex:
    """Session each timestamp belongs to: the first session D with time < D + cutoff.

    An item published exactly at the cutoff is not 'before' it and goes to the next session.
    Times after the calendar's last session give NaT.
    """
    local = to_shanghai_naive(times)
    s = _all_sessions()
    deadlines = (s + _cutoff_offset(cutoff)).values
    pos = np.searchsorted(deadlines, local.values, side="right")
    out = np.full(len(local), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = (pos < len(s)) & ~pd.isna(local)
    out[ok] = s.values[pos[ok]]
    return pd.DatetimeIndex(out)


def previous_session(day) -> pd.Timestamp:
    s = _all_sessions()
    i = s.searchsorted(pd.Timestamp(day).normalize(), side="left")
    if i == 0:
        raise ValueError(f"no session before {day}")
    return s[i - 1]


def next_session(day) -> pd.Timestamp:
    s = _all_sessions()
    i = s.searchsorted(pd.Timestamp(day).normalize(), side="right")
    if i >= len(s):
        raise ValueError(f"no session after {day}")
    return s[i]
