"""The Shanghai exchange calendar (exchange_calendars' XSHG) and point-in-time session alignment.

A timestamp belongs to the first session whose cutoff it precedes: with the default 09:30 cutoff a
strategy trading at session D's open may use everything published before 09:30 on D, and news from
weekends and holidays rolls forward to the next session. exchange_calendars ships holidays only a few
years ahead (XSHG ends 2026-12-31 in the installed version): past that horizon every weekday counts as a
session, with one warning, and `extra_holidays` removes days the exchange announces later.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd

TZ = "Asia/Shanghai"
DEFAULT_CUTOFF = "09:30"


@lru_cache(maxsize=1)
def xshg():
    import exchange_calendars as xcals

    return xcals.get_calendar("XSHG")


BEYOND_YEARS = 10  # weekdays this far past the table's end count as sessions
_warned: set = set()


def horizon() -> pd.Timestamp:
    """The last session exchange_calendars' XSHG table knows (it ships a few years of holidays ahead)."""
    last = xshg().last_session
    return pd.Timestamp(last.tz_localize(None) if last.tzinfo is not None else last)


@lru_cache(maxsize=8)
def _sessions_for(extra: tuple) -> pd.DatetimeIndex:
    known = xshg().sessions
    known = pd.DatetimeIndex(known.tz_localize(None) if known.tz is not None else known)
    end = horizon()
    beyond = pd.bdate_range(end + pd.Timedelta(days=1), end + pd.DateOffset(years=BEYOND_YEARS))
    out = known.append(beyond).as_unit("ns")
    return out.difference(pd.DatetimeIndex(extra).as_unit("ns")) if extra else out


def _holidays(extra_holidays) -> tuple:
    """Normalised, sorted, hashable form of user-given holiday dates (refusing unparseable ones by value)."""
    if extra_holidays is None:
        return ()
    if isinstance(extra_holidays, (str, pd.Timestamp)):
        extra_holidays = [extra_holidays]
    out = set()
    for d in extra_holidays:
        try:
            out.add(pd.Timestamp(d).normalize())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"extra_holidays: {d!r} is not a date ({exc})") from None
    return tuple(sorted(out))


def _all_sessions(extra_holidays=None) -> pd.DatetimeIndex:
    """XSHG sessions, then every weekday for BEYOND_YEARS past the table's horizon, less extra_holidays."""
    return _sessions_for(_holidays(extra_holidays))


def _warn_beyond(days) -> None:
    """One warning per process that sessions past the calendar's horizon are guessed (weekdays)."""
    end = horizon()
    if "beyond" in _warned or not len(days) or not (pd.DatetimeIndex(days).max() > end):
        return
    _warned.add("beyond")
    warnings.warn(f"dates after {end.date()} (the last XSHG session exchange_calendars knows): every weekday counts "
                  "as a session; give extra_holidays for exchange holidays after that date", stacklevel=3)


def sessions(start, end, extra_holidays=None) -> pd.DatetimeIndex:
    """XSHG sessions in [start, end] as naive midnight timestamps."""
    s = _all_sessions(extra_holidays)
    out = s[(s >= pd.Timestamp(start).normalize()) & (s <= pd.Timestamp(end).normalize())]
    _warn_beyond(out)
    return out


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


def align_to_sessions(times, cutoff: str = DEFAULT_CUTOFF, extra_holidays=None) -> pd.DatetimeIndex:
    """Session each timestamp belongs to: the first session D with time < D + cutoff.

    An item published exactly at the cutoff is not 'before' it and goes to the next session.
    Past the XSHG table's horizon weekdays count as sessions (one warning); later still gives NaT.
    """
    local = to_shanghai_naive(times)
    s = _all_sessions(extra_holidays)
    deadlines = (s + _cutoff_offset(cutoff)).values
    pos = np.searchsorted(deadlines, local.values, side="right")
    out = np.full(len(local), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = (pos < len(s)) & ~pd.isna(local)
    out[ok] = s.values[pos[ok]]
    out = pd.DatetimeIndex(out)
    _warn_beyond(out[~out.isna()])
    return out


def previous_session(day, extra_holidays=None) -> pd.Timestamp:
    s = _all_sessions(extra_holidays)
    i = s.searchsorted(pd.Timestamp(day).normalize(), side="left")
    if i == 0:
        raise ValueError(f"no session before {day}")
    return s[i - 1]


def next_session(day, extra_holidays=None) -> pd.Timestamp:
    s = _all_sessions(extra_holidays)
    i = s.searchsorted(pd.Timestamp(day).normalize(), side="right")
    if i >= len(s):
        raise ValueError(f"no session after {day}")
    return s[i]
