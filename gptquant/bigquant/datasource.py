"""BigQuant's DataSource and D over your own tables and the local data root ($GPTQUANT_DATA_ROOT).

`DataSource.write_df(df)` / `write_pickle(obj)` keep an object in this process and hand back a source whose
`read_df()` / `read()` give it back; the id is a hash of the content, so a run's key (checkpoints) is the
same for the same table. "bar1d_CN_STOCK_A" reads the data root's bars/, "bar1d_index_CN_STOCK_A" its
index/ folder, with BigQuant's column names (date, instrument, ..., adjust_factor) and codes (600519.SHA).
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pandas as pd

from ..errors import GptquantError
from ..text import normalize_code

BARS, INDEX = "bar1d_CN_STOCK_A", "bar1d_index_CN_STOCK_A"
TABLES = (BARS, INDEX)
_COLUMNS = {"datetime": "date", "adj_factor": "adjust_factor"}
_STORE: dict = {}  # id -> object written by write_df / write_pickle in this process


def bigquant_code(code: str, index: bool = False) -> str:
    """'600519.SH' -> '600519.SHA'; an index: '000300.SH' -> '000300.HIX', '399006.SZ' -> '399006.ZIX'."""
    digits, exch = normalize_code(code).split(".")
    if index:
        return f"{digits}.{'HIX' if exch == 'SH' else 'ZIX'}"
    return f"{digits}.{exch}A"


def index_code(code) -> str:
    """Index codes in any form (000300.HIX / .INDX / .CSI / .ZIX / .SHA / .SH) -> canonical ('000300.SH')."""
    text = str(code).strip().upper()
    digits, _, suffix = text.partition(".")
    if suffix in ("HIX", "INDX", "CSI"):
        return f"{digits}.SH"
    if suffix == "ZIX":
        return f"{digits}.SZ"
    try:
        return normalize_code(text)
    except ValueError as exc:
        raise GptquantError(f"benchmark/index: {exc}") from None


class DataSource:
    """A table by id: one written in this process, or one of the data root's tables (TABLES)."""

    def __init__(self, id: str):  # noqa: A002 (BigQuant's name)
        if id not in _STORE and id not in TABLES:
            raise GptquantError(f"DataSource {id!r}: no such table here; the local data root has {', '.join(TABLES)}, "
                                "and DataSource.write_df(df) / write_pickle(obj) make new ones")
        self.id = id

    def __repr__(self):
        return f"DataSource({self.id!r})"

    def __eq__(self, other):
        return isinstance(other, DataSource) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    @classmethod
    def write_df(cls, df: pd.DataFrame) -> "DataSource":
        if not isinstance(df, pd.DataFrame):
            raise GptquantError(f"DataSource.write_df takes a DataFrame, got {type(df).__name__}")
        try:
            digest = hashlib.sha256(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
        except TypeError:  # cells holding lists or dicts (raw_perf's positions)
            digest = hashlib.sha256(pickle.dumps(df, protocol=4))
        digest.update(repr(list(df.columns)).encode())
        return cls._keep("df_" + digest.hexdigest()[:20], df.copy())

    @classmethod
    def write_pickle(cls, obj) -> "DataSource":
        try:
            blob = pickle.dumps(obj, protocol=4)
        except Exception as exc:
            raise GptquantError(f"DataSource.write_pickle: the object cannot be pickled ({exc})") from None
        return cls._keep("pk_" + hashlib.sha256(blob).hexdigest()[:20], obj)

    @classmethod
    def _keep(cls, key, obj) -> "DataSource":
        _STORE[key] = obj
        return cls(key)

    def read_df(self, **filters) -> pd.DataFrame:
        out = self.read(**filters)
        if not isinstance(out, pd.DataFrame):
            raise GptquantError(f"{self!r} holds a {type(out).__name__}, not a DataFrame: use read()")
        return out

    def read(self, start_date=None, end_date=None, instruments=None, fields=None, **kw):
        """The table (filtered by dates on `date`, by `instruments`, to `fields`) or the pickled object."""
        if kw:
            raise GptquantError(f"{self!r}.read: unknown filter(s) {sorted(kw)}")
        if self.id in TABLES:
            return _root_table(self.id, start_date, end_date, instruments, fields)
        obj = _STORE[self.id]
        if not isinstance(obj, pd.DataFrame):
            if any(v is not None for v in (start_date, end_date, instruments, fields)):
                raise GptquantError(f"{self!r} holds a {type(obj).__name__}: filters apply only to tables")
            return obj
        return filter_frame(obj, start_date, end_date, instruments, fields, str(self))


def filter_frame(df, start_date=None, end_date=None, instruments=None, fields=None, where="table"):
    """Rows in [start_date, end_date] on `date`, of `instruments` (any code spelling), keeping `fields`."""
    keep = pd.Series(True, index=df.index)
    if start_date or end_date:
        if "date" not in df.columns:
            raise GptquantError(f"{where}: date filters need a 'date' column, found {list(df.columns)}")
        day = pd.to_datetime(df["date"])
        if start_date:
            keep &= day >= pd.Timestamp(start_date)
        if end_date:
            keep &= day <= pd.Timestamp(end_date) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    if instruments is not None:
        if "instrument" not in df.columns:
            raise GptquantError(f"{where}: instrument filters need an 'instrument' column, found {list(df.columns)}")
        wanted = {_canon(c, where) for c in ([instruments] if isinstance(instruments, str) else instruments)}
        keep &= df["instrument"].map(lambda c: _canon(c, where)).isin(wanted)
    out = df[keep.to_numpy()]
    if fields is not None:
        fields = [fields] if isinstance(fields, str) else list(fields)
        missing = [f for f in fields if f not in out.columns]
        if missing:
            raise GptquantError(f"{where}: no field(s) {', '.join(missing)}; it has {', '.join(map(str, out.columns))}")
        base = [c for c in ("date", "instrument") if c in out.columns and c not in fields]
        out = out[base + fields]
    return out


def _canon(code, where):
    try:
        return normalize_code(str(code).replace(".HIX", ".SH").replace(".ZIX", ".SZ"))
    except ValueError as exc:
        raise GptquantError(f"{where}: {exc}") from None


def _root_table(table, start_date, end_date, instruments, fields) -> pd.DataFrame:
    from ..market.prices import data_root, load_bars

    root = data_root()
    if table == BARS:
        codes = None if instruments is None else [_canon(c, table) for c in
                                                  ([instruments] if isinstance(instruments, str) else instruments)]
        bars = load_bars(root / "bars", codes, start_date, end_date)
        bars = bars.rename(columns=_COLUMNS)
        bars["instrument"] = [bigquant_code(c) for c in bars["instrument"]]
        return filter_frame(bars, fields=fields, where=f"{table} ({root / 'bars'})").reset_index(drop=True)
    frames = []
    folder = root / "index"
    if not folder.is_dir():
        raise GptquantError(f"{table}: the data root {root} has no index/ folder")
    from ..market.prices import load_benchmark

    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digits = next((w for w in _words(path) if w.isdigit() and len(w) == 6), None)
        if digits is None:
            continue
        code = f"{digits}.{'SZ' if digits.startswith('399') else 'SH'}"
        if instruments is not None and code not in {index_code(c) for c in
                                                    ([instruments] if isinstance(instruments, str) else instruments)}:
            continue
        close = load_benchmark(path, code, start_date, end_date)
        frames.append(pd.DataFrame({"date": close.index, "instrument": bigquant_code(code, index=True),
                                    "close": close.to_numpy()}))
    if not frames:
        raise GptquantError(f"{table}: no index file for {instruments or 'any index'} in {folder}")
    return filter_frame(pd.concat(frames, ignore_index=True), fields=fields, where=f"{table} ({folder})").reset_index(drop=True)


def _words(path: Path):
    import re

    return re.split(r"[^0-9A-Za-z]+", path.name)


class D:
    """BigQuant's D over the local data root."""

    @staticmethod
    def history_data(instruments=None, start_date=None, end_date=None, fields=None, groupped_by_instrument=False,
                     frequency="daily", **kw):
        if frequency not in ("daily", "1d"):
            raise GptquantError(f"D.history_data: only daily bars are in the data root, got frequency={frequency!r}")
        return DataSource(BARS).read(start_date, end_date, instruments, fields)

    @staticmethod
    def features(instruments=None, start_date=None, end_date=None, fields=None, **kw):
        """Bar fields by name; a factor the data root does not hold is an error naming it."""
        return D.history_data(instruments, start_date, end_date, fields)

    @staticmethod
    def instruments(start_date=None, end_date=None, market="CN_STOCK_A", **kw) -> list[str]:
        """Codes (BigQuant spelling) with at least one bar in [start_date, end_date]."""
        if market != "CN_STOCK_A":
            raise GptquantError(f"D.instruments: only market='CN_STOCK_A' is in the data root, got {market!r}")
        bars = DataSource(BARS).read(start_date, end_date, fields=["close"])
        return sorted(bars["instrument"].unique())

    @staticmethod
    def trading_days(start_date=None, end_date=None, market="CN", **kw) -> pd.DataFrame:
        """XSHG sessions in the range as a frame with a `date` column."""
        from ..market.calendar import sessions

        days = sessions(start_date or "2005-01-01", end_date or pd.Timestamp.today())
        return pd.DataFrame({"date": days})
