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


def load_bars(source, instruments=None, start=None, end=None, *, volume_unit: str = "shares") -> pd.DataFrame:
    """Daily bars in long format sorted by (instrument, datetime).

    source: a DataFrame, a CSV/Parquet file, or a folder of per-instrument files (a file without an
    instrument column takes its code from the file name). volume_unit="lots" multiplies volume by 100
    (tushare `vol`, as in astock_prices) so the engine's volume cap counts shares.
    """
    if volume_unit not in VOLUME_UNITS:
        raise GptquantError(f"volume_unit must be one of {sorted(VOLUME_UNITS)}, got {volume_unit!r}")
    wanted = _wanted_codes(instruments)
    frames = [_clean(raw, where, code_hint, wanted) for raw, where, code_hint in _read_sources(source, wanted)]
    if not frames:
        raise GptquantError(f"no bar files found in {source}")
    bars = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    bars["volume"] = bars["volume"] * VOLUME_UNITS[volume_unit]
    if start is not None:
        bars = bars[bars["datetime"] >= pd.Timestamp(start).normalize()]
    if end is not None:
        bars = bars[bars["datetime"] <= pd.Timestamp(end).normalize()]
    dup = bars.duplicated(["instrument", "datetime"], keep=False)
    if dup.any():
        first = bars[dup].iloc[0]
        raise GptquantError(f"{_name(source)}: {int(dup.sum())} duplicate bars, e.g. {first['instrument']} "
                            f"on {first['datetime'].date()}")
    if wanted is not None:
        missing = sorted(set(wanted) - set(bars["instrument"].unique()))
        if missing:
            raise GptquantError(f"{_name(source)}: no bars for {len(missing)} requested instrument(s) in the "
                                f"date range: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if bars.empty:
        raise GptquantError(f"{_name(source)}: no bars in the requested range")
    return bars.sort_values(["instrument", "datetime"], kind="stable").reset_index(drop=True)


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
    if "instrument" in cols.columns:
        codes = cols["instrument"].astype(str).str.strip()
        keep = codes.str.extract(r"(\d{6})", expand=False) == digits
        if not keep.any():
            raise GptquantError(f"{_name(source)}: no rows for benchmark {code}")
        cols = cols[keep.to_numpy()]
    for need in ("datetime", "close"):
        if need not in cols.columns:
            raise GptquantError(f"{_name(source)}: benchmark needs a {need!r} column, found {list(raw.columns)}")
    out = pd.Series(_numeric(cols["close"], "close", _name(source)).to_numpy(),
                    index=_dates(cols["datetime"], _name(source)), name=code)
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


def _read_sources(source, wanted):
    """Yield (raw frame, where, code from file name or None)."""
    if isinstance(source, pd.DataFrame):
        yield source, "DataFrame", None
        return
    path = Path(source)
    if not path.exists():
        raise GptquantError(f"bars: {path} does not exist")
    if path.is_file():
        yield _read_table(path), str(path), None
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
        yield _read_table(p), str(p), hint


def _read_table(path) -> pd.DataFrame:
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
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


def _clean(raw: pd.DataFrame, where: str, code_hint, wanted) -> pd.DataFrame:
    df = _rename(raw, where)
    if "instrument" not in df.columns:
        if code_hint is None:
            raise GptquantError(f"{where}: no instrument column (code/instrument/symbol) and the file name is not a code")
        df = df.assign(instrument=code_hint)
    missing = [c for c in ("datetime", *REQUIRED) if c not in df.columns]
    if missing:
        raise GptquantError(f"{where}: missing column(s) {missing}; found {list(raw.columns)}")
    df = df.set_axis(pd.RangeIndex(1, len(df) + 1), axis=0)  # labels are the source's 1-based data rows
    df["instrument"] = _codes(df["instrument"], where)
    if wanted is not None:
        df = df[df["instrument"].isin(wanted)]
    df["datetime"] = _dates(df["datetime"], where)
    for col in (*REQUIRED, "amount", "pre_close", "adj_factor"):
        if col in df.columns:
            df[col] = _numeric(df[col], col, where)
    for col in ("open", "high", "low", "close"):
        bad = df[col].isna() | (df[col] <= 0)
        if bad.any():
            _bad_row(where, df, bad, f"{col} is missing or not positive")
    bad = df["volume"].isna() | (df["volume"] < 0)
    if bad.any():
        _bad_row(where, df, bad, "volume is missing or negative")
    for col in (*REQUIRED, "amount", "pre_close", "adj_factor"):
        if col in df.columns:
            bad = np.isinf(df[col]) | (df[col] < 0)
            if bad.any():
                _bad_row(where, df, bad, f"{col} is infinite or negative")
    bad = df["high"] < df["low"]
    if bad.any():
        _bad_row(where, df, bad, "high is below low")
    for col in ("open", "close"):
        bad = (df[col] < df["low"]) | (df[col] > df["high"])
        if bad.any():
            _bad_row(where, df, bad, f"{col} is outside [low, high]")
    if "st" in df.columns:
        df["st"] = _flags(df["st"], where)
    cols = ["datetime", "instrument", *REQUIRED, *[c for c in OPTIONAL if c in df.columns]]
    return df[cols]


def _bad_row(where, df, mask, why):
    i = int(np.flatnonzero(mask.to_numpy())[0])
    row = df.iloc[i]
    raise GptquantError(f"{where}: row {df.index[i]} ({row['instrument']} {row['datetime'].date()}): {why} "
                        f"({int(mask.sum())} such rows)")


def _codes(col: pd.Series, where: str) -> pd.Series:
    # normalise each distinct code once; a column that is already canonical is returned as it is
    raw = col.astype(str).str.strip()
    ids, uniq = pd.factorize(raw, use_na_sentinel=False)
    canon = []
    for i, c in enumerate(uniq):
        try:
            canon.append(normalize_code(c))
        except ValueError:
            row = int(np.flatnonzero(ids == i)[0]) + 1
            raise GptquantError(f"{where}: row {row}: not an A-share instrument code: {c!r}") from None
    if canon == list(uniq):
        return raw
    return pd.Series(pd.array(canon, dtype="str").take(ids), index=raw.index)


def _dates(col: pd.Series, where: str) -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(col):
        idx = pd.DatetimeIndex(col)
    else:  # the format is inferred from the first value; rows in another format fail below by row number
        idx = pd.DatetimeIndex(pd.to_datetime(col.astype(str).str.strip(), errors="coerce"))
    if idx.tz is not None:
        idx = idx.tz_convert("Asia/Shanghai").tz_localize(None)
    bad = idx.isna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GptquantError(f"{where}: row {col.index[i]}: cannot parse date {col.iloc[i]!r}")
    return idx.normalize().as_unit("ns")


def _numeric(col: pd.Series, name: str, where: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col):  # already numbers: nothing to parse (text checks cost seconds on 1M rows)
        return col.astype(float)
    out = pd.to_numeric(col, errors="coerce").astype(float)
    cand = np.flatnonzero((out.isna() & col.notna()).to_numpy())  # only these can be text that is not a number
    if len(cand):
        text = col.iloc[cand].astype(str).str.strip().to_numpy()
        bad = cand[text != ""]
        if len(bad):
            i = int(bad[0])
            raise GptquantError(f"{where}: row {col.index[i]}: column {name!r} is not a number: {col.iloc[i]!r}")
    return out


def _flags(col: pd.Series, where: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return col.astype(bool)
    if pd.api.types.is_numeric_dtype(col):  # 0/1 (NaN = not ST) without building strings
        v = col.to_numpy(dtype=float, na_value=np.nan)
        if (np.isnan(v) | (v == 0) | (v == 1)).all():
            return pd.Series(v == 1, index=col.index)
    text = col.astype(str).str.strip().str.lower()
    truth = {"1": True, "true": True, "yes": True, "y": True, "0": False, "false": False, "no": False, "n": False,
             "": False, "nan": False, "1.0": True, "0.0": False}
    bad = ~text.isin(list(truth))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise GptquantError(f"{where}: row {col.index[i]}: column 'st' must be a true/false flag, got {col.iloc[i]!r}")
    return text.map(truth).astype(bool)
