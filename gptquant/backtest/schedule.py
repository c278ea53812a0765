"""zipline's schedule_function rules on daily XSHG sessions.

A date rule picks sessions (every day, the n-th session of each week or month from its start or end);
a time rule picks the phase: `market_open` runs before the open, like before_trading_start (sees D-1's
bar, orders fill at D's fields); `market_close` (the default, as zipline's daily mode) runs after the
close, after handle_data (sees D's bar, orders fill on D+1). Minutes are accepted and cannot matter on
daily bars.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from ..errors import GptquantError
from ..market.calendar import sessions


@dataclass(frozen=True)
class DateRule:
    period: str  # "day", "week" or "month"
    offset: int = 0
    from_end: bool = False

    def __post_init__(self):
        if int(self.offset) < 0:
            raise GptquantError(f"days_offset must be >= 0, got {self.offset}")

    def matches(self, day) -> bool:
        if self.period == "day":
            return True
        days = _period_sessions(self.period, _period_key(self.period, pd.Timestamp(day)))
        i = days.get_loc(pd.Timestamp(day).normalize())
        return (len(days) - 1 - i if self.from_end else i) == self.offset


def _period_key(period, day):
    if period == "week":
        return day.normalize() - pd.Timedelta(days=day.weekday())
    return day.normalize().replace(day=1)


@lru_cache(maxsize=256)
def _period_sessions(period, first) -> pd.DatetimeIndex:
    last = first + (pd.Timedelta(days=6) if period == "week" else pd.offsets.MonthEnd(0))
    return sessions(first, last)


@dataclass(frozen=True)
class TimeRule:
    phase: str  # "open" or "close"


class date_rules:  # noqa: N801 (zipline's spelling)
    """zipline.api.date_rules on XSHG sessions."""

    @staticmethod
    def every_day():
        return DateRule("day")

    @staticmethod
    def week_start(days_offset: int = 0):
        return DateRule("week", days_offset)

    @staticmethod
    def week_end(days_offset: int = 0):
        return DateRule("week", days_offset, from_end=True)

    @staticmethod
    def month_start(days_offset: int = 0):
        return DateRule("month", days_offset)

    @staticmethod
    def month_end(days_offset: int = 0):
        return DateRule("month", days_offset, from_end=True)


class time_rules:  # noqa: N801
    """zipline.api.time_rules: only the phase matters on daily bars (see the module docstring)."""

    @staticmethod
    def market_open(offset=None, hours: int = 0, minutes: int = 0):
        return TimeRule("open")

    @staticmethod
    def market_close(offset=None, hours: int = 0, minutes: int = 0):
        return TimeRule("close")

    @staticmethod
    def every_minute():
        return TimeRule("close")


@dataclass(frozen=True)
class Scheduled:
    func: object
    date_rule: DateRule
    time_rule: TimeRule


def scheduled(func, date_rule=None, time_rule=None) -> Scheduled:
    if not callable(func):
        raise GptquantError(f"schedule_function needs a function(context, data), got {func!r}")
    date_rule = date_rule or date_rules.every_day()
    time_rule = time_rule or time_rules.market_close()
    if not isinstance(date_rule, DateRule) or not isinstance(time_rule, TimeRule):
        raise GptquantError("schedule_function takes date_rules.* and time_rules.* values")
    return Scheduled(func, date_rule, time_rule)
