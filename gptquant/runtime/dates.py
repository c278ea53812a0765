"""News timestamps: one parse per value, a reason for each value we will not guess at.

Why a module of its own: `pd.Timestamp("03/04/2024")` silently reads month first, so a day-first file
lands every article a month off. Dates written d/d/yyyy are refused as ambiguous unless the order is
configured (date_order="dmy" or "mdy") or the values themselves settle it (31/03/2024).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

DATE_ORDERS = (None, "dmy", "mdy")
ACCEPTED = "YYYY-MM-DD[ HH:MM[:SS]], YYYY/MM/DD, YYYYMMDD, 2024年3月4日, ISO 8601 with a UTC offset"
_SLASHED = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})(?=$|[ T])(.*)$")
_CJK_DATE = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日\s*(.*)$")
_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
MAX_LEN = 64


def parse_datetimes(values: list, required: bool, date_order: str | None = None) -> tuple[pd.DatetimeIndex, list[str]]:
    """Naive Asia/Shanghai times (aware ones converted) and a reason per unusable value ('' if fine)."""
    out, reasons = [], []
    for v in values:
        ts, reason = _one(v, required, date_order)
        out.append(ts)
        reasons.append(reason)
    return pd.DatetimeIndex(out, dtype="datetime64[ns]"), reasons


def _one(v, required: bool, date_order):
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) or \
            (isinstance(v, str) and not v.strip()):
        return pd.NaT, "missing datetime" if required else ""
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return pd.NaT, f"datetime {v!r} is a number, not a date/time"
    if isinstance(v, str):
        if len(v) > MAX_LEN:
            return pd.NaT, f"unparseable datetime {v[:40]!r}… ({len(v)} characters)"
        text = v.translate(_FULLWIDTH).strip()
        if any(ord(c) < 32 for c in text):
            return pd.NaT, f"unparseable datetime {v[:40]!r} (control character)"
        text, reason = _settle_order(text, date_order)
        if reason:
            return pd.NaT, reason
    else:
        text = v
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        ts = pd.NaT
    if ts is pd.NaT or pd.isna(ts):
        return pd.NaT, f"unparseable datetime {str(v)[:40]!r} (accepted: {ACCEPTED})"
    if ts.tzinfo is not None:
        ts = ts.tz_convert("Asia/Shanghai").tz_localize(None)
    if not 1900 <= ts.year <= 2200:  # e.g. a code '600519' read as the year 600: refuse, never overflow
        return pd.NaT, f"datetime {str(v)[:40]!r} is outside the years 1900-2200"
    return ts, ""


def _settle_order(text: str, date_order) -> tuple[str, str]:
    """Rewrite d/d/y and 年月日 dates as ISO; ('', reason) when the day/month order cannot be known."""
    m = _CJK_DATE.match(text)
    if m:
        y, mo, d, rest = m.groups()
        return f"{y}-{int(mo):02d}-{int(d):02d} {rest}".strip(), ""
    m = _SLASHED.match(text)
    if not m:
        return text, ""
    a, b, y, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    year = int(y) if len(y) == 4 else 2000 + int(y)
    if date_order is None:
        if a <= 12 and b <= 12 and a != b:
            return "", (f"ambiguous date {text[:40]!r}: day/month order unknown; write {ACCEPTED}, "
                        "or set date_order='dmy' or 'mdy'")
        if len(y) == 2:
            return "", f"ambiguous date {text[:40]!r}: two-digit year; set date_order='dmy' or 'mdy'"
        day, month = (a, b) if a > 12 else (b, a)
    else:
        day, month = (a, b) if date_order == "dmy" else (b, a)
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return "", f"unparseable datetime {text[:40]!r}: no month {month} / day {day} (date_order={date_order!r})"
    return f"{year:04d}-{month:02d}-{day:02d}{rest}", ""
