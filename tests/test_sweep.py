"""`gptquant backtest --sweep`: a grid of strategy parameters as independent tasks on a synthetic market.

A failing grid point (top_k = 0 makes the strategy raise) must be reported with its error while the other
points still produce results; results land in sweep_results.parquet, per-task JSON rows and the run history.
"""
from __future__ import annotations

import contextlib
import io
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.backtest.sweep import expand_grid, run_sweep  # noqa: E402
from gptquant.cli import main  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

STRATEGY = '''
def initialize(context):
    context.k = int(context.options["top_k"])
    context.every = int(context.options["rebalance_every"])
    if context.k < 1:
        raise ValueError("top_k must be >= 1")

def before_trading_start(context, data):
    if context.trading_day_index % context.every == 0:
        scores = data.current(context.instruments, "score").dropna().sort_values(ascending=False)
        top = list(scores.index[: context.k])
        for sym in context.portfolio.positions:
            if sym not in top:
                context.order_target_percent(sym, 0)
        for sym in top:
            context.order_target_percent(sym, 0.9 / context.k)
'''

CONFIG = '''
title = "sweep test"
[data]
bars = "bars.csv"
benchmark_data = "csi300.csv"
[panel]
path = "panel.parquet"
[backtest]
start = "2021-03-02"
end = "2021-04-15"
[strategy]
module = "strat.py"
[strategy.params]
top_k = 1
rebalance_every = 5
[sweep]
top_k = [0, 1, 2, 3]
rebalance_every = [2, 5]
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    days = sessions("2021-03-01", "2021-04-15")
    rng = np.random.default_rng(11)
    bars, panel = [], []
    for code in ("600000", "000001", "300750", "601318"):
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.015, len(days))))
        bars.append(pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "code": code, "open": close, "high": close,
                                  "low": close, "close": close, "volume": 1e8}))
        panel.append(pd.DataFrame({"datetime": days, "instrument": code + (".SH" if code[0] == "6" else ".SZ"),
                                   "score": rng.normal(size=len(days))}))
    pd.concat(bars).to_csv(root / "bars.csv", index=False)
    pd.concat(panel).set_index(["datetime", "instrument"]).to_parquet(root / "panel.parquet")
    pd.DataFrame({"date": sessions("2021-02-01", "2021-04-15"), "code": "000300", "close": 5000.0}).to_csv(
        root / "csi300.csv", index=False)
    (root / "strat.py").write_text(STRATEGY)
    (root / "sweep.toml").write_text(CONFIG)
    return root


def check_results(table: pd.DataFrame, out):
    assert len(table) == 8 and table["task"].tolist() == list(range(8))
    assert table[["param_top_k", "param_rebalance_every"]].values.tolist() == [
        [k, r] for k in (0, 1, 2, 3) for r in (2, 5)]
    failed = table[table["status"] == "failed"]
    assert failed["param_top_k"].tolist() == [0, 0]
    assert failed["error"].str.contains("ValueError: top_k must be >= 1").all()
    assert failed["sharpe"].isna().all()
    ok = table[table["status"] == "ok"]
    assert ok["total_return"].notna().all() and ok["total_return"].nunique() > 1  # the parameters mattered
    assert sorted(p.name for p in out.glob("task-*.json")) == [f"task-{i:04d}.json" for i in range(8)]
    row = json.loads((out / "task-0003.json").read_text())
    assert row["params"] == {"top_k": 1, "rebalance_every": 5} and row["summary"]["total_return"] == pytest.approx(
        table.loc[3, "total_return"])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep_results.parquet"), table, check_dtype=False)


@pytest.fixture(scope="module")
def pooled(project, tmp_path_factory):
    """The CLI on a 2-process pool: (exit code, printed text, output folder)."""
    out = tmp_path_factory.mktemp("pooled") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["backtest", "--sweep", str(project / "sweep.toml"), "--out", str(out), "--workers", "2"])
    return rc, buf.getvalue(), out


def test_cli_sweep_on_a_local_pool_reports_failures_and_records_history(pooled):
    rc, printed, out = pooled
    assert rc == 1  # two grid points failed
    check_results(pd.read_parquet(out / "sweep_results.parquet"), out)
    assert printed.count("FAILED task-000") == 2 and "8 tasks, 6 ok, 2 failed" in printed
    with sqlite3.connect(out / "history.sqlite") as db:
        (name, status, n), = db.execute("SELECT config_name, status, (SELECT count(*) FROM backtests) FROM runs").fetchall()
        names = [r[0] for r in db.execute("SELECT name FROM backtests WHERE status = 'failed' ORDER BY name")]
    assert (name, status, n) == ("sweep:sweep", "failed", 8)
    assert names == ["task-0000 top_k=0,rebalance_every=2", "task-0001 top_k=0,rebalance_every=5"]


def test_in_process_run_gives_the_pools_results(project, pooled, tmp_path):
    one = run_sweep(project / "sweep.toml", tmp_path / "a", workers=1, progress=False)
    check_results(one, tmp_path / "a")
    pool = pd.read_parquet(pooled[2] / "sweep_results.parquet")
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), pool.drop(columns="seconds"), check_dtype=False)


def test_bad_sweep_tables_are_clear_errors(project, tmp_path):
    base = {"strategy": {"params": {"top_k": 1}}}
    for sweep, msg in [({}, r"\[sweep\] table"), ({"top_kk": [1]}, "sweep.top_kk has no default"),
                       ({"top_k": 3}, "non-empty list"), ({"top_k": []}, "non-empty list"),
                       ({"top_k": [1, "a"]}, "of one kind"), ({"top_k": [1, 1]}, "twice")]:
        with pytest.raises(GptquantError, match=msg):
            expand_grid({**base, "sweep": sweep}, "x.toml")
    assert expand_grid({**base, "sweep": {"top_k": [1, 2.5]}}, "x.toml") == [{"top_k": 1}, {"top_k": 2.5}]
    # a sweep config without --sweep, and sweep flags without a sweep, are refused
    assert main(["backtest", str(project / "sweep.toml"), "--out", str(tmp_path / "o")]) == 2
    assert main(["backtest", str(project / "sweep.toml"), "--workers", "2"]) == 2
