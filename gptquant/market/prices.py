"""Daily bars and benchmark series from CSV/Parquet files, folders or DataFrames, in one long format.

Every loader returns the same shape so the backtest never cares where bars came from:
`datetime` (naive midnight), `instrument` (canonical, e.g. 600519.SH), `open, high, low, close, volume`
and, when the source has them, `amount, pre_close, adj_factor, st`. Bad input raises GptquantError naming
the file, column or row; no row is dropped silently.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..encoding import decode_text, read_text
from ..errors import GptquantError
from ..text import CHINEXT_20PCT_FROM, limit_ratio, normalize_code
from . import bar_checks as C

REQUIRED = ("open", "high", "low", "close", "volume")
OPTIONAL = ("amount", "pre_close", "adj_factor", "st")
# accepted header spellings (lower-cased) -> our name
ALIASES = {
    "date": "datetime", "datetime": "datetime", "trade_date": "datetime", "日期": "datetime", "time": "datetime",
    "instrument": "instrument", "code": "instrument", "ts_code": "instrument", "symbol": "instrument",
    "ticker": "instrument", "代码": "instrument", "股票代码": "instrument",
    "open": "open", "开盘": "open", "high": "high", "最高": "high", "low": "low", "最低": "low",
    "close": "close", "收盘": "close", "volume": "volume", "vol": "volume", "成交量": "volume",
    "amount": "amount", "成交额": "amount", "pre_close": "pre_close", "preclose": "pre_close",
    "adj_factor": "adj_factor", "adjust_factor": "adj_factor", "factor": "adj_factor",
    "st": "st", "is_st": "st",
}
BAR_SUFFIXES = (".csv", ".csv.gz", ".txt", ".parquet", ".pq")
VOLUME_UNITS = {"shares": 1, "lots": 100}  # tushare-style `vol` counts lots of 100 shares
DATA_ROOT_ENV = "GPTQUANT_DATA_ROOT"


def load_bars(source, instruments=None, start=None, end=None, *, volume_unit: str = "shares",
              bad_rows: str = "raise"):
    """Daily bars in long format sorted by (instrument, datetime).

    source: a DataFrame, a CSV/Parquet file, or a folder of per-instrument files (a file without an
    instrument column takes its code from the file name). volume_unit="lots" multiplies volume by 100
    (tushare `vol`, as in astock_prices) so the engine's volume cap counts shares.
    bad_rows="raise" refuses the first impossible bar (NaN, inf, negative, high < low, open or close outside
    [low, high], duplicate date and code, unreadable row) naming its row; "reject" leaves such rows out and
    returns (bars, rejects) with file, row and reason for each.
    """
    if volume_unit not in VOLUME_UNITS:
        raise GptquantError(f"volume_unit must be one of {sorted(VOLUME_UNITS)}, got {volume_unit!r}")
    if bad_rows not in ("raise", "reject"):
        raise GptquantError(f"bad_rows must be 'raise' or 'reject', got {bad_rows!r}")
    rejects = [] if bad_rows == "reject" else None
    wanted = _wanted_codes(instruments)
    frames = [_clean(raw, where, code_hint, wanted, rejects).assign(_file=where, _row=lambda d: d.index)
              for raw, where, code_hint in _read_sources(source, wanted, rejects)]
    if not frames:
        raise GptquantError(f"no bar files found in {source}")
    bars = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    bars["volume"] = bars["volume"] * VOLUME_UNITS[volume_unit]
    if start is not None:
        bars = bars[bars["datetime"] >= pd.Timestamp(start).normalize()]
    if end is not None:
        bars = bars[bars["datetime"] <= pd.Timestamp(end).normalize()]
    dup = bars.duplicated(["instrument", "datetime"], keep=False)
    if dup.any() and rejects is not None:
        rejects.extend({"file": f, "row": int(r), "reason": f"duplicate bar for {i} on {d.date()}"}
                       for f, r, i, d in bars.loc[dup, ["_file", "_row", "instrument", "datetime"]].itertuples(index=False))
        bars = bars[~dup]
    elif dup.any():
        first = bars[dup].iloc[0]
        same = bars[dup & (bars["instrument"] == first["instrument"]) & (bars["datetime"] == first["datetime"])]
        where = ", ".join(f"{f} row {r}" for f, r in zip(same["_file"], same["_row"]))
        raise GptquantError(f"{_name(source)}: {int(dup.sum())} duplicate bars, e.g. {first['instrument']} "
                            f"on {first['datetime'].date()} ({where})")
    if wanted is not None:
        missing = sorted(set(wanted) - set(bars["instrument"].unique()))
        if missing:
            raise GptquantError(f"{_name(source)}: no bars for {len(missing)} requested instrument(s) in the "
                                f"date range: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if bars.empty:
        raise GptquantError(f"{_name(source)}: no bars in the requested range")
    bars = bars.drop(columns=["_file", "_row"]).sort_values(["instrument", "datetime"], kind="stable").reset_index(drop=True)
    if rejects is None:
        return bars
    return bars, pd.DataFrame(rejects, columns=["file", "row", "reason"])


def load_benchmark(source, code: str = "000300.SH", start=None, end=None) -> pd.Series:
    """Benchmark closes indexed by datetime, named by the canonical code.

    A file with a code column is filtered to the code's six digits (index files often write 000300
    without an exchange); a folder is searched for the one file whose name holds those digits.
    """
    code = _index_code(code)
    digits = code.split(".")[0]
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        hits = sorted(p for p in Path(source).iterdir() if digits in p.name and p.name.lower().endswith(BAR_SUFFIXES))
        if len(hits) != 1:
            raise GptquantError(f"{source}: expected one file named with {digits} for benchmark {code}, found {len(hits)}")
        source = hits[0]
    raw = _read_table(source) if not isinstance(source, pd.DataFrame) else source
    cols = _rename(raw, _name(source))
    cols = cols.set_axis(pd.RangeIndex(1, len(cols) + 1), axis=0)  # rows named by their place in the source
    if "instrument" in cols.columns:
        codes = cols["instrument"].astype(str).str.strip()
        keep = codes.str.extract(r"(\d{6})", expand=False) == digits
        if not keep.any():
            raise GptquantError(f"{_name(source)}: no rows for benchmark {code}")
        cols = cols[keep.to_numpy()]
    for need in ("datetime", "close"):
        if need not in cols.columns:
            raise GptquantError(f"{_name(source)}: benchmark needs a {need!r} column, found {list(raw.columns)}")
    refuse = C.Reasons(cols, _name(source), strict=True)
    dates, bad = C.dates(cols["datetime"])
    refuse.add(bad, lambda: "cannot parse date " + cols["datetime"].map(repr), keyed=False)
    close, bad = C.numbers(cols["close"])
    refuse.add(bad, lambda: "column 'close' is not a number: " + cols["close"].map(repr), keyed=False)
    out = pd.Series(close.to_numpy(), index=dates, name=code)
    out.index.name = "datetime"
    if out.index.duplicated().any():
        raise GptquantError(f"{_name(source)}: duplicate benchmark dates, e.g. {out.index[out.index.duplicated()][0].date()}")
    out = out.sort_index()
    if start is not None:
        out = out[out.index >= pd.Timestamp(start).normalize()]
    if end is not None:
        out = out[out.index <= pd.Timestamp(end).normalize()]
    return out


def data_root(root=None) -> Path:
    """The configured data root (argument or $GPTQUANT_DATA_ROOT): bars/ holds bars, index/ holds index files."""
    root = root or os.environ.get(DATA_ROOT_ENV)
    if not root:
        raise GptquantError(f"no data given: pass data=/benchmark_data= or set {DATA_ROOT_ENV} to a folder with bars/ and index/")
    root = Path(root)
    if not root.is_dir():
        raise GptquantError(f"data root {root} is not a folder")
    return root


def price_limits(bars: pd.DataFrame) -> pd.DataFrame:
    """Up/down limit prices per bar: reference close × (1 ± board ratio), rounded to the cent like the exchange.

    The reference is `pre_close` when the source has it (it is ex-rights adjusted) else the previous
    bar's close; an instrument's first bar without pre_close has no limit (NaN).
    """
    ref = bars["pre_close"] if "pre_close" in bars.columns else None
    prev = bars.groupby("instrument", sort=False)["close"].shift(1)
    ref = prev if ref is None else ref.fillna(prev)
    st = bars["st"].astype(bool) if "st" in bars.columns else pd.Series(False, index=bars.index)
    late = bars["datetime"] >= pd.Timestamp(CHINEXT_20PCT_FROM)
    key = pd.DataFrame({"instrument": bars["instrument"], "st": st, "late": late})
    combos = key.drop_duplicates()
    combos["ratio"] = [limit_ratio(c, CHINEXT_20PCT_FROM if lt else "2000-01-01", bool(s))
                       for c, s, lt in zip(combos["instrument"], combos["st"], combos["late"])]
    ratio = key.merge(combos, on=["instrument", "st", "late"], how="left")["ratio"].to_numpy()
    refv = ref.to_numpy(dtype=float)
    return pd.DataFrame({"up_limit": _round_cent(refv * (1 + ratio)), "down_limit": _round_cent(refv * (1 - ratio))},
                        index=bars.index)


def momentum_panel(bars: pd.DataFrame, window: int = 20, name: str = "momentum") -> pd.DataFrame:
    """A point-in-time price feature for trying strategies without a text model.

    Row D holds close(D-1) / close(D-1-window) - 1 over the instrument's own bars, so it is known
    before D's open like a panel with the default 09:30 cutoff.
    """
    if window < 1:
        raise GptquantError(f"momentum window must be >= 1, got {window}")
    g = bars.groupby("instrument", sort=False)["close"]
    mom = (g.pct_change(window, fill_method=None).groupby(bars["instrument"], sort=False).shift(1))
    panel = pd.DataFrame({"datetime": bars["datetime"], "instrument": bars["instrument"], name: mom.to_numpy()})
    panel = panel.dropna(subset=[name]).set_index(["datetime", "instrument"]).sort_index()
    return panel


# ---- helpers -------------------------------------------------------------------------------------

def _index_code(code) -> str:
    """Index codes also come as BigQuant's 000300.HIX / 000300.INDX; they name the SH-listed index."""
    text = str(code).strip().upper()
    if re.fullmatch(r"\d{6}\.(HIX|INDX|CSI)", text):
        return text[:6] + ".SH"
    try:
        return normalize_code(code)
    except ValueError as exc:
        raise GptquantError(f"benchmark: {exc}") from None


def _round_cent(x: np.ndarray) -> np.ndarray:
    # round half up like the exchange (numpy rounds half to even); the epsilon absorbs float error
    return np.floor(x * 100 + 0.5 + 1e-7) / 100


def _wanted_codes(instruments):
    if instruments is None:
        return None
    if isinstance(instruments, str):
        instruments = [instruments]
    out = []
    for c in instruments:
        try:
            out.append(normalize_code(c))
        except ValueError as exc:
            raise GptquantError(f"instruments: {exc}") from None
    return out


def _name(source) -> str:
    return "DataFrame" if isinstance(source, pd.DataFrame) else str(source)


def _read_sources(source, wanted, rejects=None):
    """Yield (raw frame, where, code from file name or None); with a rejects list, CSV rows that cannot be
    parsed (bad bytes, wrong field count) are added to it instead of failing the file."""
    if isinstance(source, pd.DataFrame):
        yield source, "DataFrame", None
        return
    path = Path(source)
    if not path.exists():
        raise GptquantError(f"bars: {path} does not exist")
    if path.is_file():
        yield _read_table(path, rejects), str(path), None
        return
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(BAR_SUFFIXES))
    from tqdm import tqdm

    for p in tqdm(files, desc="bars", unit="file", disable=None, leave=False):
        base = next(p.name[: -len(x)] for x in BAR_SUFFIXES if p.name.lower().endswith(x))
        try:
            hint = normalize_code(base)
        except ValueError:
            hint = None
        if wanted is not None and hint is not None and hint not in wanted:
            continue
        yield _read_table(p, rejects), str(p), hint


def _read_table(path, rejects=None) -> pd.DataFrame:
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if rejects is not None and not name.endswith(".gz"):
            return _read_rows(path, rejects)
        if name.endswith(".gz"):
            import gzip

            with gzip.open(path, "rb") as fh:
                text = decode_text(fh.read(), path)
        else:
            text = read_text(path)  # decided per line: a GB18030 row anywhere is read, not a 64 KB guess
        head = pd.read_csv(io.StringIO(text), nrows=0)
        str_cols = {c: str for c in head.columns if ALIASES.get(str(c).strip().lower()) in ("instrument", "datetime")}
        return pd.read_csv(io.StringIO(text), dtype=str_cols)
    except GptquantError:
        raise
    except Exception as exc:  # parser errors name the file
        raise GptquantError(f"{path}: cannot read bars: {exc}") from exc


def _read_rows(path: Path, rejects: list) -> pd.DataFrame:
    """A CSV as strings, one record at a time (gptquant.csvrows): unreadable rows go to rejects."""
    from ..csvrows import read_header

    header, records = read_header(path)
    good, rows = [], []
    for rec in records:
        if rec.fields is None:
            rejects.append({"file": str(path), "row": rec.row, "reason": rec.reason})
        else:
            good.append(rec.fields)
            rows.append(rec.row)
    return pd.DataFrame(good, columns=header, dtype=object).assign(__row__=np.asarray(rows, dtype="int64"))


def _rename(raw: pd.DataFrame, where: str) -> pd.DataFrame:
    mapping, seen = {}, {}
    for col in raw.columns:
        ours = ALIASES.get(str(col).strip().lower())
        if ours is None:
            continue
        if ours in seen:
            raise GptquantError(f"{where}: columns {seen[ours]!r} and {col!r} both mean {ours!r}")
        seen[ours] = col
        mapping[col] = ours
    out = raw[list(mapping)].rename(columns=mapping)
    if "datetime" not in out.columns and isinstance(raw.index, pd.DatetimeIndex):
        out = out.assign(datetime=raw.index)
    return out


def _clean(raw: pd.DataFrame, where: str, code_hint, wanted, rejects: list | None = None) -> pd.DataFrame:
    """Bars in our columns and types. rejects=None refuses the first bad row; a list collects
    {file, row, reason} for every bad row, which is then left out."""
    df = _rename(raw, where)
    if "instrument" not in df.columns:
        if code_hint is None:
            raise GptquantError(f"{where}: no instrument column (code/instrument/symbol) and the file name is not a code")
        df = df.assign(instrument=code_hint)
    missing = [c for c in ("datetime", *REQUIRED) if c not in df.columns]
    if missing:
        raise GptquantError(f"{where}: missing column(s) {missing}; found {list(raw.columns)}")
    rows = raw["__row__"].to_numpy() if "__row__" in raw.columns else np.arange(1, len(df) + 1)
    df = df.set_axis(pd.Index(rows, name=None), axis=0)  # labels are the source's 1-based data rows
    for step in ("codes", "values"):
        reasons = C.Reasons(df, where, strict=rejects is None)
        C.codes(df, reasons) if step == "codes" else C.check_values(df, reasons)
        if reasons.bad.any():
            rejects.extend({"file": where, "row": int(r), "reason": w}
                           for r, w in zip(df.index[reasons.bad], reasons.why[reasons.bad]))
            df = df[~reasons.bad]
        if step == "codes" and wanted is not None:
            df = df[df["instrument"].isin(wanted)]
    cols = ["datetime", "instrument", *REQUIRED, *[c for c in OPTIONAL if c in df.columns]]
    return df[cols]
