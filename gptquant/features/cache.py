"""A score cache in SQLite keyed by (bundle id, sha256 of the normalised text).

Re-scoring unchanged text with the same bundle is a lookup. The bundle id hashes the whole manifest
(gptquant.bundle.bundle_hash), so another bundle's scores are never served. Each row carries a checksum
of its key and features: a row damaged on disk (or written by an older gptquant without one) is not
served but rescored, and the count is logged. The database runs in WAL mode with a busy
timeout, and every batch is one transaction, so two runs can share a cache without corrupting it and a
killed run keeps every batch it finished.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..sqlite_store import SqliteStore
from ..text import normalize_text

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    bundle_hash TEXT NOT NULL,
    text_hash   TEXT NOT NULL,
    features    TEXT NOT NULL,
    checksum    TEXT,
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


def row_checksum(bundle_hash: str, text_hash: str, features: str) -> str:
    """sha256 over a row's key and features blob: a flipped byte anywhere in the row shows."""
    return hashlib.sha256(f"{bundle_hash}\x00{text_hash}\x00{features}".encode("utf-8")).hexdigest()[:32]


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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(scores)")}
        if "checksum" not in columns:  # a cache from before row checksums: its rows will be rescored
            self._db.execute("ALTER TABLE scores ADD COLUMN checksum TEXT")
        self.corrupt_rows = 0  # rows found damaged (and not served) by get_many, over this object's life

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def get_many(self, bundle_hash: str, keys) -> dict[str, dict]:
        """Cached feature rows for the given text keys (see text_key): {key: {column: value}} for the hits.

        A row whose checksum does not match (damaged, or from a cache without checksums) is left out, so the
        caller rescores it; how many is logged and added to `corrupt_rows`."""
        keys = list(dict.fromkeys(keys))
        hits, bad = {}, 0
        for i in range(0, len(keys), _CHUNK):
            part = keys[i:i + _CHUNK]
            sql = (f"SELECT text_hash, features, checksum FROM scores WHERE bundle_hash = ? "
                   f"AND text_hash IN ({','.join('?' * len(part))})")
            found = self._db.execute(sql, [bundle_hash, *part]).fetchall()
            rows = _verified_rows(bundle_hash, found)
            bad += len(found) - len(rows)
            hits.update(rows)
        if bad:
            self.corrupt_rows += bad
            log.warning("%s: %d cached row(s) failed their checksum and will be rescored", self.path, bad)
        return hits

    def put_many(self, bundle_hash: str, keys, rows) -> None:
        """Store feature rows (dicts or a DataFrame, aligned with keys) in one transaction."""
        if isinstance(rows, pd.DataFrame):
            rows = rows.to_dict("records")
        keys, rows = list(keys), list(rows)
        if len(keys) != len(rows):
            raise ValueError(f"put_many: {len(keys)} keys but {len(rows)} feature rows")
        blobs = [json.dumps({c: _plain(v) for c, v in r.items()}, ensure_ascii=False) for r in rows]
        data = [(bundle_hash, k, b, row_checksum(bundle_hash, k, b)) for k, b in zip(keys, blobs)]
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO scores (bundle_hash, text_hash, features, checksum) "
                           "VALUES (?, ?, ?, ?)", data)


def _verified_rows(bundle_hash: str, found: list) -> dict:
    """{key: features} of the (key, blob, checksum) rows that pass _verified; the blobs whose checksums match
    are decoded in one json call (a per-row call costs more than the decoding), row by row if that fails."""
    good = [(k, blob) for k, blob, checksum in found
            if isinstance(blob, str) and checksum == row_checksum(bundle_hash, k, blob)]
    try:
        rows = json.loads("[" + ",".join(blob for _, blob in good) + "]")
    except ValueError:
        rows = None
    if rows is None or len(rows) != len(good) or not all(isinstance(r, dict) for r in rows):
        rows = [_verified(bundle_hash, k, blob, row_checksum(bundle_hash, k, blob)) for k, blob in good]
    return {k: r for (k, _), r in zip(good, rows) if r is not None}


def _verified(bundle_hash: str, key: str, blob, checksum):
    """The row's features, or None when its checksum is missing or wrong or it is not a JSON object."""
    if not isinstance(blob, str) or checksum != row_checksum(bundle_hash, key, blob):
        return None
    try:
        row = json.loads(blob)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None
