"""One way to open the project's SQLite files (score cache, run history): WAL journal so readers and one
writer at a time from several processes never corrupt it, autocommit unless a transaction is opened,
and a one-line error when the file is not a usable database."""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path

from .errors import GptquantError


class SqliteStore:
    """Base class: `self._db` is the connection; usable as a context manager."""

    what = "database"  # named in errors, e.g. "score cache"

    def __init__(self, path, schema: str, timeout: float = 30.0, synchronous: str | None = None):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            if synchronous:
                self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(schema)
        except sqlite3.DatabaseError as exc:
            raise GptquantError(f"{self.path}: not a usable {self.what} ({exc})") from None

    @contextmanager
    def transaction(self):
        """One write transaction (taken at once, so two writers queue instead of failing mid-way): committed
        when the block ends, rolled back if it raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
