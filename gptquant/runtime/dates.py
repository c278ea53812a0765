"""News timestamps, parsed in one place for every reader (news, labels via the news reader, the panel), with a
reason for each value we will not guess at.

Why a module of its own: `pd.Timestamp("03/04/2024")` silently reads month first, so a day-first file
lands every article a month off. Dates written d/d/yyyy are refused as ambiguous unless the order is
configured (date_order="dmy" or "mdy") or the values themselves settle it (31/03/2024).

Speed: values in the common form YYYY-MM-DD[ HH:MM[:SS[.f]]] are parsed in one vectorised call; only the
others (and common-looking ones that do not parse, e.g. 2024-02-30) go through the per-value rules,
which give each bad value its reason, so the caller can name the row.
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


_COMMON = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
YEARS = (1900, 2200)


def parse_datetimes(values, required: bool, date_order: str | None = None) -> tuple[pd.DatetimeIndex, list[str]]:
    """Naive Asia/Shanghai times (aware ones converted) and a reason per unusable value ('' if fine).

    values: a list, array or Series (strings, timestamps, anything: what is not a date gets a reason)."""
    col = values if isinstance(values, pd.Series) else pd.Series(values, dtype=None if len(values) else object)
    if pd.api.types.is_datetime64_any_dtype(col):
        return _parse_datetime64(col, required)
    obj = col.to_numpy(dtype=object)
    out = np.full(len(obj), np.datetime64("NaT"), dtype="datetime64[ns]")
    reasons = [""] * len(obj)
    common = np.flatnonzero(_common_form(col)) if len(obj) else np.array([], dtype=int)
    if len(common):
        parsed = pd.DatetimeIndex(pd.to_datetime(pd.Series(obj[common], dtype=object), format="ISO8601", errors="coerce"))
        good = np.asarray(parsed.notna() & (parsed.year >= YEARS[0]) & (parsed.year <= YEARS[1]))
        out[common[good]] = parsed[good].as_unit("ns").to_numpy()
        slow = np.ones(len(obj), dtype=bool)
        slow[common[good]] = False
        slow = np.flatnonzero(slow)
    else:
        slow = range(len(obj))
    for i in slow:  # everything not in the common form: per value, with its reason
        ts, reasons[i] = _one(obj[i], required, date_order)
        out[i] = np.datetime64("NaT") if ts is pd.NaT else ts.as_unit("ns").to_datetime64()
    return pd.DatetimeIndex(out), reasons


def _common_form(col: pd.Series) -> np.ndarray:
    """Mask of the values in the common form; on an all-text column the match runs in Arrow (~10x the object path)."""
    if col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) == "string":
        col = col.astype("str")
    text = col if pd.api.types.is_string_dtype(col) and col.dtype != object else col.astype(object)
    return text.str.fullmatch(_COMMON).fillna(False).to_numpy(dtype=bool)


def _parse_datetime64(col: pd.Series, required: bool) -> tuple[pd.DatetimeIndex, list[str]]:
    """A column that is already datetime64 (Parquet, DataFrames): converted, checked for NaT and the years."""
    idx = pd.DatetimeIndex(col)
    if idx.tz is not None:
        idx = idx.tz_convert("Asia/Shanghai").tz_localize(None)
    idx = idx.as_unit("ns")
    reasons = [""] * len(idx)
    missing = np.asarray(idx.isna())
    outside = ~missing & np.asarray((idx.year < YEARS[0]) | (idx.year > YEARS[1]))
    for i in np.flatnonzero(missing | outside):
        reasons[i] = ("missing datetime" if required else "") if missing[i] else \
            f"datetime {str(col.iloc[i])[:40]!r} is outside the years {YEARS[0]}-{YEARS[1]}"
    return idx.where(~outside), reasons


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
    if not YEARS[0] <= ts.year <= YEARS[1]:  # e.g. a code '600519' read as the year 600: refuse, never overflow
        return pd.NaT, f"datetime {str(v)[:40]!r} is outside the years {YEARS[0]}-{YEARS[1]}"
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
