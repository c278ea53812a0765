"""`gptquant backtest --sweep`: a grid of strategy parameters as independent tasks on a synthetic market.

A failing grid point (top_k = 0 makes the strategy raise) must be reported with its error while the other
points still produce results; results land in sweep_results.parquet, per-task JSON rows and the run history.
"""
from __future__ import annotations

import contextlib
import io
import sqlite3

import pandas as pd
import pytest

pytest.importorskip("backtrader")

from conftest import check_sweep_results  # noqa: E402
from gptquant.backtest.sweep import expand_grid, run_sweep  # noqa: E402
from gptquant.cli import main  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402

@pytest.fixture(scope="module")
def pooled(sweep_project, tmp_path_factory):
    """The CLI on a 2-process pool: (exit code, printed text, output folder)."""
    out = tmp_path_factory.mktemp("pooled") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["backtest", "--sweep", str(sweep_project / "sweep.toml"), "--out", str(out), "--workers", "2"])
    return rc, buf.getvalue(), out


def test_cli_sweep_on_a_local_pool_reports_failures_and_records_history(pooled):
    rc, printed, out = pooled
    assert rc == 1  # two grid points failed
    check_sweep_results(pd.read_parquet(out / "sweep_results.parquet"), out)
    assert printed.count("FAILED task-000") == 2 and "8 tasks, 6 ok, 2 failed" in printed
    with sqlite3.connect(out / "history.sqlite") as db:
        (name, status, n), = db.execute("SELECT config_name, status, (SELECT count(*) FROM backtests) FROM runs").fetchall()
        names = [r[0] for r in db.execute("SELECT name FROM backtests WHERE status = 'failed' ORDER BY name")]
    assert (name, status, n) == ("sweep:sweep", "failed", 8)
    assert names == ["task-0000 top_k=0,rebalance_every=2", "task-0001 top_k=0,rebalance_every=5"]


def test_in_process_run_gives_the_pools_results(sweep_project, pooled, tmp_path):
    one = run_sweep(sweep_project / "sweep.toml", tmp_path / "a", workers=1, progress=False)
    check_sweep_results(one, tmp_path / "a")
    pool = pd.read_parquet(pooled[2] / "sweep_results.parquet")
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), pool.drop(columns="seconds"), check_dtype=False)


def test_bad_sweep_tables_are_clear_errors(sweep_project, tmp_path):
    base = {"strategy": {"params": {"top_k": 1}}}
    for sweep, msg in [({}, r"\[sweep\] table"), ({"top_kk": [1]}, "sweep.top_kk has no default"),
                       ({"top_k": 3}, "non-empty list"), ({"top_k": []}, "non-empty list"),
                       ({"top_k": [1, "a"]}, "of one kind"), ({"top_k": [1, 1]}, "twice")]:
        with pytest.raises(GptquantError, match=msg):
            expand_grid({**base, "sweep": sweep}, "x.toml")
    assert expand_grid({**base, "sweep": {"top_k": [1, 2.5]}}, "x.toml") == [{"top_k": 1}, {"top_k": 2.5}]
    # a sweep config without --sweep, and sweep flags without a sweep, are refused
    assert main(["backtest", str(sweep_project / "sweep.toml"), "--out", str(tmp_path / "o")]) == 2
    assert main(["backtest", str(sweep_project / "sweep.toml"), "--workers", "2"]) == 2
