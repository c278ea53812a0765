"""A score cache in SQLite keyed by (bundle hash, sha256 of the normalised text).

Re-scoring unchanged text with the same bundle is a lookup. The database runs in WAL mode with a busy
timeout, and every batch is one transaction, so two runs can share a cache without corrupting it and a
killed run keeps every batch it finished.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..sqlite_store import SqliteStore
from ..text import normalize_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    bundle_hash TEXT NOT NULL,
    text_hash   TEXT NOT NULL,
    features    TEXT NOT NULL,
    PRIMARY KEY (bundle_hash, text_hash)
) WITHOUT ROWID
"""
_CHUNK = 500  # keys per SELECT, well under SQLite's bound-variable limit


CACHE_PATH_ENV = "GPTQUANT_SCORE_CACHE"


def default_path() -> Path:
    """$GPTQUANT_SCORE_CACHE, else scores.sqlite under $GPTQUANT_CACHE (default ~/.cache/gptquant)."""
    import os

    if os.environ.get(CACHE_PATH_ENV):
        return Path(os.environ[CACHE_PATH_ENV])
    from ..paths import cache_dir

    return cache_dir() / "scores.sqlite"


def text_key(text: str) -> str:
    """sha256 hex of the normalised text: whitespace or markup changes do not miss the cache."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def _plain(v):
    """JSON-ready Python scalar (numpy scalars unwrapped)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class ScoreCache(SqliteStore):
    """Feature rows of scored texts, shared safely between processes (open one per process)."""

    what = "score cache"

    def __init__(self, path=None, timeout: float = 60.0):
        """path: the SQLite file (default: default_path(), whose directory is created)."""
        if path is None:
            path = default_path()
            path.parent.mkdir(parents=True, exist_ok=True)
        if not Path(path).parent.is_dir():
            raise GptquantError(f"{Path(path).parent}: directory for the score cache does not exist")
        super().__init__(path, _SCHEMA, timeout=timeout, synchronous="NORMAL")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def get_many(self, bundle_hash: str, keys) -> dict[str, dict]:
        """Cached feature rows for the given text keys (see text_key): {key: {column: value}} for the hits."""
        keys = list(dict.fromkeys(keys))
        hits = {}
        for i in range(0, len(keys), _CHUNK):
            part = keys[i:i + _CHUNK]
            sql = f"SELECT text_hash, features FROM scores WHERE bundle_hash = ? AND text_hash IN ({','.join('?' * len(part))})"
            for k, blob in self._db.execute(sql, [bundle_hash, *part]):
                hits[k] = json.loads(blob)
        return hits

    def put_many(self, bundle_hash: str, keys, rows) -> None:
        """Store feature rows (dicts or a DataFrame, aligned with keys) in one transaction."""
        if isinstance(rows, pd.DataFrame):
            rows = rows.to_dict("records")
        keys, rows = list(keys), list(rows)
        if len(keys) != len(rows):
            raise ValueError(f"put_many: {len(keys)} keys but {len(rows)} feature rows")
        data = [(bundle_hash, k, json.dumps({c: _plain(v) for c, v in r.items()}, ensure_ascii=False)) for k, r in zip(keys, rows)]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO scores (bundle_hash, text_hash, features) VALUES (?, ?, ?)", data)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
