"""Reading a news table (CSV, JSONL, Parquet or a DataFrame) into clean articles plus a rejects table.

Every input row ends up in exactly one of the two outputs: a row we cannot use is reported with its
1-based data row number and the reason, never silently dropped.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..csvrows import gc_paused, read_header
from ..encoding import iter_lines
from ..errors import GptquantError
from .dates import DATE_ORDERS, parse_datetimes as _parse_datetimes
from ..text import normalize_code, normalize_text, split_codes

ARTICLE_COLUMNS = ["article_id", "row", "datetime", "text", "instruments", "source"]
REJECT_COLUMNS = ["row", "article_id", "reason"]
CODE_COLUMNS = ("instrument", "instruments", "codes", "code")  # first one present wins
_BARE_CODE = re.compile(r"^\s*\d{6}\s*$")


@gc_paused()
def read_news(source, *, text_column: str | None = None, require_meta: bool = True,
              name: str | None = None, date_order: str | None = None,
              pre_rejects: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a news table; returns (articles, rejects).

    articles: article_id, row, datetime (naive Asia/Shanghai), text, instruments (list of canonical
    codes), source. rejects: row, article_id, reason. With require_meta=False the datetime and code
    columns may be absent or empty (plain scoring needs only text); present but unparseable values are
    still rejected. date_order ('dmy' or 'mdy') says how to read dates like 03/04/2024; without it they
    are rejected as ambiguous. pre_rejects: rows already rejected while parsing (streaming chunks).
    """
    if date_order not in DATE_ORDERS:
        raise GptquantError(f"date_order must be one of {', '.join(map(str, DATE_ORDERS))}, got {date_order!r}")
    loaded_name, df, loaded_rejects = _load(source)
    pre_rejects = loaded_rejects if pre_rejects is None else pre_rejects
    name = name or loaded_name
    if not isinstance(df, pd.DataFrame):
        raise GptquantError(f"{name}: expected a table, got {type(df).__name__}")
    df = df.reset_index(drop=True)
    rows = np.arange(1, len(df) + 1) if "__row__" not in df.columns else df.pop("__row__").to_numpy()

    texts = _text_values(name, df, text_column)
    dt_col = "datetime" if "datetime" in df.columns else None
    code_col = next((c for c in CODE_COLUMNS if c in df.columns), None)
    if require_meta and dt_col is None:
        raise GptquantError(f"{name}: missing required column 'datetime'")
    if require_meta and code_col is None:
        raise GptquantError(f"{name}: missing required column 'instrument' (or 'codes')")

    ids = _article_ids(name, df, rows)
    reasons: list[list[str]] = [[] for _ in range(len(df))]

    for i, t in enumerate(texts):
        if t is None:
            reasons[i].append("missing text")
        elif not isinstance(t, str):
            reasons[i].append(f"text is not a string ({type(t).__name__})")
        elif _empty(t):
            reasons[i].append("empty text")

    if dt_col is not None:
        times, dt_reasons = _parse_datetimes(df[dt_col], required=require_meta, date_order=date_order)
        for i, r in enumerate(dt_reasons):
            if r:
                reasons[i].append(r)
    else:
        times = pd.DatetimeIndex([pd.NaT] * len(df))

    instruments: list[list[str]] = [[] for _ in range(len(df))]
    if code_col is not None:
        exchange = df["exchange"].tolist() if "exchange" in df.columns else None
        parsed: dict = {}  # a market has a few thousand codes: each distinct text is parsed once
        for i, value in enumerate(df[code_col].tolist()):
            ex = exchange[i] if exchange else None
            key = (value, ex) if isinstance(value, str) and (ex is None or isinstance(ex, str)) else None
            if key in parsed:
                codes = list(parsed[key])  # each row owns its list
            else:
                try:
                    codes = _parse_codes(value, ex)
                except ValueError as exc:
                    reasons[i].append(f"bad instrument code in '{code_col}': {exc}")
                    continue
                if key is not None:
                    parsed[key], codes = codes, list(codes)
            if not codes and require_meta:
                reasons[i].append(f"no instrument code in '{code_col}'")
            instruments[i] = codes

    sources = df["source"].tolist() if "source" in df.columns else [None] * len(df)
    bad = np.array([bool(r) for r in reasons], dtype=bool)
    good = ~bad
    articles = pd.DataFrame({
        "article_id": _take(ids, good),
        "row": rows[good].astype("int64"),
        "datetime": times[good],
        "text": [t for t, g in zip(texts, good) if g],
        "instruments": [c for c, g in zip(instruments, good) if g],
        "source": [None if _missing(s) else s for s, g in zip(sources, good) if g],
    }, columns=ARTICLE_COLUMNS)
    rejects = pd.DataFrame({
        "row": rows[bad].astype("int64"),
        "article_id": _take(ids, bad),
        "reason": ["; ".join(r) for r in reasons if r],
    }, columns=REJECT_COLUMNS)
    if len(pre_rejects):
        rejects = pd.concat([pre_rejects, rejects], ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
    return articles, rejects


STREAM_CHUNK_ROWS = 65_536


def iter_news(source, *, chunk_rows: int = STREAM_CHUNK_ROWS, text_column: str | None = None,
              require_meta: bool = True, date_order: str | None = None):
    """Yield (articles, rejects) chunk by chunk, as read_news would give for the whole table (same global
    row numbers and article ids), so a file of millions of rows never sits in memory whole.

    CSV and Parquet files stream; JSONL files and DataFrames come as one chunk. Whether the `id` column
    can serve as article_id (present, non-empty, unique) is decided by a first pass over that column alone.
    """
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise GptquantError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    kind = None if isinstance(source, pd.DataFrame) else _stream_kind(Path(source))
    if kind is None:
        yield read_news(source, text_column=text_column, require_meta=require_meta, date_order=date_order)
        return
    path = Path(source)
    use_ids = _ids_usable(path, kind)
    offset = 0
    for raw, pre in _raw_chunks(path, kind, chunk_rows):
        raw = raw.reset_index(drop=True)
        if "__row__" not in raw.columns:  # Parquet: every row is a data row
            raw["__row__"] = np.arange(offset + 1, offset + len(raw) + 1, dtype="int64")
        offset += len(raw) + len(pre)
        if not use_ids and "id" in raw.columns:
            raw = raw.drop(columns="id")
        yield read_news(raw, text_column=text_column, require_meta=require_meta, name=str(path),
                        date_order=date_order, pre_rejects=pre)


def _stream_kind(path: Path) -> str | None:
    if not path.is_file():
        raise GptquantError(f"{path}: news file not found")
    suffix = path.suffix.lower()
    return "parquet" if suffix in (".parquet", ".pq") else "csv" if suffix in (".csv", ".tsv", ".txt", "") else None


def _raw_chunks(path: Path, kind: str, chunk_rows: int, columns=None):
    """(raw string table of at most chunk_rows rows, rejects found while parsing those rows)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        empty = pd.DataFrame(columns=REJECT_COLUMNS)
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns):
                yield batch.to_pandas(), empty
        except GptquantError:
            raise
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise GptquantError(f"{path}: cannot read Parquet ({exc})") from None
        return
    yield from _csv_chunks(path, "\t" if path.suffix.lower() == ".tsv" else ",", chunk_rows, columns)


def _csv_chunks(path: Path, sep: str, chunk_rows: int | None, columns=None):
    """CSV rows parsed one record at a time (csvrows): ragged, malformed or undecodable rows become
    rejects with their row number instead of shifting columns or failing the file."""
    header, records = read_header(path, sep)
    keep = [header.index(c) for c in columns if c in header] if columns else list(range(len(header)))
    names = [header[i] for i in keep]

    def table(good, rows, bad):
        df = pd.DataFrame(good, columns=names, dtype=object)
        df["__row__"] = np.asarray(rows, dtype="int64")
        return df, pd.DataFrame(bad, columns=REJECT_COLUMNS)

    good, rows, bad = [], [], []
    for rec in records:
        if rec.fields is None:
            bad.append({"row": rec.row, "article_id": None, "reason": rec.reason})
        else:
            good.append([rec.fields[i] for i in keep])
            rows.append(rec.row)
        if chunk_rows and len(good) + len(bad) >= chunk_rows:
            yield table(good, rows, bad)
            good, rows, bad = [], [], []
    if good or bad or chunk_rows is None:
        yield table(good, rows, bad)


def _ids_usable(path: Path, kind: str) -> bool:
    """First pass over the `id` column only: usable as article_id when present, non-empty and unique."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        if "id" not in pq.ParquetFile(path).schema_arrow.names:
            return False
    else:
        if "id" not in read_header(path, "\t" if path.suffix.lower() == ".tsv" else ",")[0]:
            return False
    seen: set = set()
    for chunk, _ in _raw_chunks(path, kind, STREAM_CHUNK_ROWS, columns=["id"]):
        ids = chunk["id"]
        if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
            warnings.warn(f"{path}: column 'id' has empty values; using row numbers as article_id", stacklevel=3)
            return False
        before = len(seen)
        seen.update(ids.tolist())
        if len(seen) - before != len(ids):
            warnings.warn(f"{path}: column 'id' is not unique; using row numbers as article_id", stacklevel=3)
            return False
    return True


# ---- loading ------------------------------------------------------------------------------------

def _load(source) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Returns (name for messages, raw table, rejects found while parsing, e.g. bad JSON lines)."""
    empty = pd.DataFrame(columns=REJECT_COLUMNS)
    if isinstance(source, pd.DataFrame):
        return "news table", source, empty
    path = Path(source)
    if not path.is_file():
        raise GptquantError(f"{path}: news file not found")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() in (".gz",) else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return str(path), pd.read_parquet(path), empty
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise GptquantError(f"{path}: cannot read Parquet ({exc})") from None
    if suffix in (".jsonl", ".ndjson", ".json"):
        return str(path), *_parse_jsonl(path)
    if suffix in (".csv", ".tsv", ".txt", ""):
        return (str(path), *next(_csv_chunks(path, "\t" if suffix == ".tsv" else ",", None)))
    raise GptquantError(f"{path}: unknown news format '{path.suffix}' (use .csv, .jsonl or .parquet)")


def _parse_jsonl(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One JSON object per non-blank line, each line decoded on its own (gptquant.encoding)."""
    records, rows, bad = [], [], []
    n = 0
    for line in iter_lines(path):
        if not line.text.strip():
            continue
        n += 1
        if line.error:
            bad.append({"row": n, "article_id": None, "reason": f"line {line.number}: {line.error}"})
            continue
        try:
            obj = json.loads(line.text)
        except json.JSONDecodeError as exc:
            bad.append({"row": n, "article_id": None, "reason": f"invalid JSON ({exc.msg} at column {exc.colno})"})
            continue
        if not isinstance(obj, dict):
            bad.append({"row": n, "article_id": None, "reason": f"JSON line is a {type(obj).__name__}, not an object"})
            continue
        records.append(obj)
        rows.append(n)
    if n == 0:
        raise GptquantError(f"{path}: empty file (no JSON lines)")
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    df["__row__"] = np.asarray(rows, dtype="int64")
    return df, pd.DataFrame(bad, columns=REJECT_COLUMNS)


# ---- columns --------------------------------------------------------------------------------------

def _text_values(name: str, df: pd.DataFrame, text_column: str | None) -> list:
    if text_column is not None:
        if text_column not in df.columns:
            raise GptquantError(f"{name}: missing text column '{text_column}' (columns: {', '.join(map(str, df.columns))})")
        return [None if _missing(v) else v for v in df[text_column].tolist()]
    if "text" in df.columns:
        return [None if _missing(v) else v for v in df["text"].tolist()]
    if "title" in df.columns or "content" in df.columns:
        titles = df["title"].tolist() if "title" in df.columns else [None] * len(df)
        bodies = df["content"].tolist() if "content" in df.columns else [None] * len(df)
        out = []
        for t, b in zip(titles, bodies):
            parts = [v for v in (t, b) if not _missing(v) and not (isinstance(v, str) and not v.strip())]
            if any(not isinstance(v, str) for v in parts):
                out.append(next(v for v in parts if not isinstance(v, str)))
            else:
                out.append("\n".join(parts) if parts else None)
        return out
    raise GptquantError(f"{name}: missing required column 'text' (or 'title' + 'content')")


def _article_ids(name: str, df: pd.DataFrame, rows: np.ndarray) -> list:
    """The `id` column when present and unique, else the 1-based data row numbers."""
    if "id" in df.columns:
        ids = df["id"]
        dup = ids[ids.duplicated(keep=False)]
        if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
            warnings.warn(f"{name}: column 'id' has empty values; using row numbers as article_id", stacklevel=3)
        elif len(dup):
            warnings.warn(f"{name}: column 'id' is not unique (e.g. {dup.iloc[0]!r}); using row numbers as article_id", stacklevel=3)
        else:
            return ids.tolist()
    return [int(r) for r in rows]


def _parse_codes(value, exchange=None) -> list[str]:
    if _missing(value):
        return []
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return [normalize_code(int(value))]
    if isinstance(value, str) and exchange and isinstance(exchange, str) and exchange.strip() and _BARE_CODE.match(value):
        return [normalize_code(f"{value.strip()}.{exchange.strip()}")]
    if isinstance(value, (list, tuple)):
        value = [f"{v:06d}" if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v for v in value]
    return list(dict.fromkeys(split_codes(value)))


def _empty(text: str) -> bool:
    """normalize_text(text) == '', without normalising: only markup can hide behind visible characters."""
    if "<" in text or "&" in text:
        return not normalize_text(text)
    return not text or text.isspace()


def _missing(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, float) and math.isnan(v)


def _take(values: list, mask: np.ndarray) -> list:
    return [v for v, m in zip(values, mask) if m]
