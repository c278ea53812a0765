"""The one reader of user tables by file suffix (features, panels, labels): Parquet, CSV/TSV or JSON lines,
with one clear error for a missing file or an unknown format. (News has its own streaming, rejecting reader
in gptquant.runtime.news.)"""
from __future__ import annotations

from pathlib import Path

from .errors import GptquantError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "json"}


def read_table(path, what: str = "table", formats=None, **csv_options):
    """The table at `path` as a DataFrame; `formats` limits the accepted suffixes (e.g. {".parquet"});
    csv_options go to pandas.read_csv (dtype, keep_default_na, encoding)."""
    import pandas as pd

    path = Path(path)
    allowed = formats or FORMATS
    kind = FORMATS.get(path.suffix.lower()) if path.suffix.lower() in allowed else None
    if kind is None:
        raise GptquantError(f"{path}: unknown {what} format '{path.suffix}' (use {', '.join(sorted(allowed))})")
    if not path.is_file():
        raise GptquantError(f"{path}: {what} file not found")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind in ("csv", "tsv"):
            return pd.read_csv(path, sep="\t" if kind == "tsv" else ",", **csv_options)
        return pd.read_json(path, lines=kind == "jsonl", dtype=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise GptquantError(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc})") from None
