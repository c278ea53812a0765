"""gptquant.sqlite_store: one transaction helper for the score cache and the run history."""
import sqlite3

import pytest

from gptquant.history import History


def test_a_failing_record_leaves_nothing_half_written(tmp_path):
    run = {"run_id": "r1", "config_name": "c", "config_hash": "h", "started": "2026-01-01T00:00:00", "status": "ok",
           "backtests": [{"name": "a", "status": "ok"}, {"name": "a", "status": "ok"}]}  # same name twice: the 2nd insert fails
    with History(tmp_path / "h.sqlite") as hist:
        with pytest.raises(sqlite3.IntegrityError):
            hist.record(run)
        assert hist.runs("c") == []  # the runs row written before the failure was rolled back
        hist.record({**run, "backtests": run["backtests"][:1]})
        assert [r["run_id"] for r in hist.runs("c")] == ["r1"]
