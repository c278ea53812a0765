"""Every check a daily bar must pass, as masks over the table, so one code path serves both policies:
refuse the file at its first bad row (the default: one error naming the row, the check and how many rows
fail it) or reject bad rows with their reasons and keep the rest (bad_rows="reject").

Rows are labelled by their 1-based place in the source, so a message names the row a user can find.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..text import normalize_code

PRICES = ("open", "high", "low", "close")
NUMERIC = (*PRICES, "volume", "amount", "pre_close", "adj_factor")
_TRUTH = {"1": True, "true": True, "yes": True, "y": True, "0": False, "false": False, "no": False, "n": False,
          "": False, "nan": False, "1.0": True, "0.0": False}


class Reasons:
    """The first failed check of each row; in strict mode the first failure raises at once."""

    def __init__(self, df: pd.DataFrame, where: str, strict: bool):
        self.df, self.where, self.strict = df, where, strict
        self.bad = np.zeros(len(df), dtype=bool)
        self.why = np.full(len(df), "", dtype=object)

    def add(self, mask, why, keyed: bool = True) -> None:
        """why: a text, or a callable giving per-row texts (a Series; built only when some row fails).
        keyed rows are named with their code and date."""
        mask = np.asarray(mask, dtype=bool) & ~self.bad
        if not mask.any():
            return
        text = np.asarray(why(), dtype=object)[mask] if callable(why) else np.full(int(mask.sum()), why, dtype=object)
        if self.strict:
            i = int(np.flatnonzero(mask)[0])
            key = ""
            if keyed:
                row = self.df.iloc[i]
                key = f" ({row['instrument']} {pd.Timestamp(row['datetime']).date()})"
            tail = f" ({int(mask.sum())} such rows)" if keyed else ""
            raise GptquantError(f"{self.where}: row {self.df.index[i]}{key}: {text[0]}{tail}")
        self.bad |= mask
        self.why[mask] = text


def codes(df: pd.DataFrame, reasons: Reasons) -> None:
    """Canonical instrument codes, each distinct value normalised once."""
    raw = df["instrument"].astype(str).str.strip()
    ids, uniq = pd.factorize(raw, use_na_sentinel=False)
    canon, bad = [], np.zeros(len(uniq), dtype=bool)
    for i, c in enumerate(uniq):
        try:
            canon.append(normalize_code(c))
        except ValueError:
            canon.append(c)
            bad[i] = True
    if bad.any():
        mask = bad[ids]
        reasons.add(mask, lambda: "not an A-share instrument code: " + raw.map(repr), keyed=False)
    df["instrument"] = raw if canon == list(uniq) else pd.Series(pd.array(canon, dtype="str").take(ids), index=raw.index)


def dates(col: pd.Series) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """(naive midnight dates, mask of values that are not dates)."""
    if pd.api.types.is_datetime64_any_dtype(col):
        idx = pd.DatetimeIndex(col)
    else:  # the format is inferred from the first value; rows in another format are marked by row
        idx = pd.DatetimeIndex(pd.to_datetime(col.astype(str).str.strip(), errors="coerce"))
    if idx.tz is not None:
        idx = idx.tz_convert("Asia/Shanghai").tz_localize(None)
    return idx.normalize().as_unit("ns"), np.asarray(idx.isna())


def numbers(col: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(floats, mask of non-empty texts that are not numbers)."""
    if pd.api.types.is_numeric_dtype(col):  # already numbers: nothing to parse (text checks cost seconds on 1M rows)
        return col.astype(float), np.zeros(len(col), dtype=bool)
    out = pd.to_numeric(col, errors="coerce").astype(float)
    bad = np.zeros(len(col), dtype=bool)
    cand = np.flatnonzero((out.isna() & col.notna()).to_numpy())  # only these can be text that is not a number
    if len(cand):
        bad[cand] = col.iloc[cand].astype(str).str.strip().to_numpy() != ""
    return out, bad


def flags(col: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(booleans, mask of values that are not a true/false flag)."""
    if pd.api.types.is_bool_dtype(col):
        return col.astype(bool), np.zeros(len(col), dtype=bool)
    if pd.api.types.is_numeric_dtype(col):  # 0/1 (NaN = not ST) without building strings
        v = col.to_numpy(dtype=float, na_value=np.nan)
        if (np.isnan(v) | (v == 0) | (v == 1)).all():
            return pd.Series(v == 1, index=col.index), np.zeros(len(col), dtype=bool)
    text = col.astype(str).str.strip().str.lower()
    bad = ~text.isin(list(_TRUTH))
    return text.map(_TRUTH).fillna(False).astype(bool), bad.to_numpy()


def check_values(df: pd.DataFrame, reasons: Reasons) -> None:
    """Parse dates, numbers and flags in place, then the bar's own consistency, row by row."""
    raw = df["datetime"]
    df["datetime"], bad = dates(raw)
    reasons.add(bad, lambda: "cannot parse date " + raw.map(repr), keyed=False)
    for col in NUMERIC:
        if col in df.columns:
            raw = df[col]
            df[col], bad = numbers(raw)
            reasons.add(bad, lambda: f"column {col!r} is not a number: " + raw.map(repr), keyed=False)
    for col in PRICES:
        reasons.add(df[col].isna() | (df[col] <= 0), f"{col} is missing or not positive")
    reasons.add(df["volume"].isna() | (df["volume"] < 0), "volume is missing or negative")
    for col in NUMERIC:
        if col in df.columns:
            reasons.add(np.isinf(df[col]) | (df[col] < 0), f"{col} is infinite or negative")
    reasons.add(df["high"] < df["low"], "high is below low")
    for col in ("open", "close"):
        reasons.add((df[col] < df["low"]) | (df[col] > df["high"]), f"{col} is outside [low, high]")
    if "st" in df.columns:
        raw = df["st"]
        df["st"], bad = flags(raw)
        reasons.add(bad, lambda: "column 'st' must be a true/false flag, got " + raw.map(repr), keyed=False)
