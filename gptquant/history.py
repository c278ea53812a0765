"""Run history of nightly jobs in SQLite, and the comparison of a run with the one before it.

One row per run (config and bundle hashes, data window, per-stage timings, headline IC figures, status)
and one row per backtest (summary metrics or the error). WAL mode and a busy timeout let a reader look
at the history while a run writes it; each run is recorded in one transaction.
"""
from __future__ import annotations

import json
from pathlib import Path

from .jsonsafe import json_safe
from .sqlite_store import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    config_name TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    bundle_hash TEXT,
    inputs_hash TEXT,
    started     TEXT NOT NULL,
    seconds     REAL,
    status      TEXT NOT NULL,
    data_start  TEXT,
    data_end    TEXT,
    articles    INTEGER,
    scored      INTEGER,
    run_dir     TEXT,
    timings     TEXT NOT NULL,
    analysis    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backtests (
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    name    TEXT NOT NULL,
    status  TEXT NOT NULL,
    summary TEXT,
    error   TEXT,
    seconds REAL,
    PRIMARY KEY (run_id, name)
);
"""


class History(SqliteStore):
    """The run history of every nightly config sharing one SQLite file."""

    what = "run history"

    def __init__(self, path, timeout: float = 30.0):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, _SCHEMA, timeout=timeout)

    def record(self, run: dict) -> None:
        """Store one run: keys of the runs table, `timings` and `analysis` dicts, `backtests` list of dicts
        (name, status, summary, error, seconds)."""
        cols = ("run_id", "config_name", "config_hash", "bundle_hash", "inputs_hash", "started", "seconds", "status",
                "data_start", "data_end", "articles", "scored", "run_dir")
        values = [run.get(c) for c in cols] + [json.dumps(json_safe(run.get("timings", {}))),
                                               json.dumps(json_safe(run.get("analysis", {})), ensure_ascii=False)]
        with self.transaction() as db:
            db.execute(f"INSERT INTO runs ({', '.join(cols)}, timings, analysis) VALUES ({', '.join('?' * (len(cols) + 2))})",
                       values)
            db.executemany(
                "INSERT INTO backtests (run_id, name, status, summary, error, seconds) VALUES (?, ?, ?, ?, ?, ?)",
                [(run["run_id"], b["name"], b["status"], json.dumps(json_safe(b.get("summary"))), b.get("error"), b.get("seconds"))
                 for b in run.get("backtests", [])])

    def runs(self, config_name: str) -> list[dict]:
        """Every recorded run of a config, oldest first, with its backtests."""
        cur = self._db.execute("SELECT * FROM runs WHERE config_name = ? ORDER BY started, run_id", (config_name,))
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            run = dict(zip(names, row))
            run["timings"] = json.loads(run["timings"])
            run["analysis"] = json.loads(run["analysis"])
            bts = self._db.execute("SELECT name, status, summary, error, seconds FROM backtests WHERE run_id = ? ORDER BY name",
                                   (run["run_id"],)).fetchall()
            run["backtests"] = [{"name": n, "status": s, "summary": json.loads(m) if m else None, "error": e, "seconds": t}
                                for n, s, m, e, t in bts]
            out.append(run)
        return out

    def previous(self, config_name: str, statuses=("ok", "failed")) -> dict | None:
        """The latest run of this config that got through its stages (status ok or failed), or None."""
        runs = [r for r in self.runs(config_name) if statuses is None or r["status"] in statuses]
        return runs[-1] if runs else None


def compare(previous: dict | None, current: dict, thresholds: dict) -> list[dict]:
    """Metric-by-metric comparison of two runs.

    Rows: backtest summary metrics (`<backtest>.<metric>`) and analysis means (`analysis.<kind>.<horizon>`,
    kind ic or rank_ic). `thresholds` maps a metric name (e.g. "sharpe", "rank_ic") to the absolute change
    that gets the row flagged; metrics without a threshold are listed, never flagged.
    """
    if previous is None:
        return []
    rows = []

    def add(name, metric, old, new):
        change = None if old is None or new is None else new - old
        limit = thresholds.get(metric)
        flagged = bool(limit is not None and change is not None and abs(change) > float(limit))
        rows.append({"metric": name, "previous": old, "current": new, "change": change, "threshold": limit, "flagged": flagged})

    old_bt = {b["name"]: b for b in previous.get("backtests", [])}
    for b in current.get("backtests", []):
        before = old_bt.get(b["name"])
        if before is None:
            continue
        if before["status"] != b["status"]:
            rows.append({"metric": f"{b['name']}.status", "previous": before["status"], "current": b["status"],
                         "change": None, "threshold": None, "flagged": True})
        new_s, old_s = b.get("summary") or {}, before.get("summary") or {}
        for metric in new_s:
            if metric in old_s:
                add(f"{b['name']}.{metric}", metric, old_s[metric], new_s[metric])
    old_a, new_a = previous.get("analysis") or {}, current.get("analysis") or {}
    for kind in ("ic", "rank_ic"):
        for h, value in (new_a.get(kind) or {}).items():
            old = (old_a.get(kind) or {}).get(h)
            if h in (old_a.get(kind) or {}):
                add(f"analysis.{kind}.{h}", kind, old, value)
    return rows
