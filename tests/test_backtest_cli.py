"""`gptquant backtest CONFIG.toml` end to end on synthetic files, the report, and the summary metrics."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.backtest.result import metrics  # noqa: E402
from gptquant.cli import main  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

STRATEGY = '''
def initialize(context):
    context.k = context.options["top_k"]

def before_trading_start(context, data):
    if context.trading_day_index % 5 == 0:
        scores = data.current(context.instruments, "score").dropna().sort_values(ascending=False)
        top = list(scores.index[: context.k])
        for sym in context.portfolio.positions:
            if sym not in top:
                context.order_target_percent(sym, 0)
        for sym in top:
            context.order_target_percent(sym, 0.45)
'''


@pytest.fixture()
def project(tmp_path):
    days = sessions("2021-03-01", "2021-04-30")
    rng = np.random.default_rng(3)
    rows, panel = [], []
    for code in ("600000", "000001", "300750"):
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
        rows.append(pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "code": code, "open": close, "high": close,
                                  "low": close, "close": close, "volume": 1e8}))
        panel.append(pd.DataFrame({"datetime": days, "instrument": code + (".SH" if code[0] == "6" else ".SZ"),
                                   "score": rng.normal(size=len(days))}))
    pd.concat(rows).to_csv(tmp_path / "bars.csv", index=False)
    pd.concat(panel).set_index(["datetime", "instrument"]).to_parquet(tmp_path / "panel.parquet")
    bench = sessions("2021-02-01", "2021-04-30")
    pd.DataFrame({"date": bench, "code": "000300", "close": np.linspace(5000, 5200, len(bench))}).to_csv(
        tmp_path / "csi300.csv", index=False)
    (tmp_path / "strat.py").write_text(STRATEGY)
    (tmp_path / "bt.toml").write_text('''
title = "<script>alert(1)</script> top-2"
[data]
bars = "bars.csv"
benchmark_data = "csi300.csv"
[panel]
path = "panel.parquet"
[backtest]
start = "2021-03-02"
end = "2021-04-30"
[strategy]
module = "strat.py"
[strategy.params]
top_k = 2
[rules]
order_price_field_sell = "open"
''')
    return tmp_path


def test_cli_runs_a_config_and_writes_every_output(project, capsys):
    out = project / "out"
    assert main(["backtest", str(project / "bt.toml"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"annual_return", "volatility", "sharpe", "max_drawdown", "alpha", "beta", "information_ratio", "win_rate",
                            "turnover", "total_return", "benchmark_return"}
    daily = pd.read_csv(out / "daily.csv", index_col=0)
    assert len(daily) == len(sessions("2021-03-02", "2021-04-30"))
    assert summary["total_return"] == pytest.approx(daily["portfolio_value"].iloc[-1] / 1e6 - 1)
    orders = pd.read_csv(out / "orders.csv")
    assert (orders["status"] == "filled").sum() > 4
    report = (out / "report.html").read_text()
    assert "<script>alert" not in report and "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert "data:image/png;base64," in report
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert "total_return" in capsys.readouterr().out


def test_cli_names_unknown_keys_and_missing_files(project, capsys):
    cfg = project / "bt.toml"
    cfg.write_text(cfg.read_text().replace("[rules]", "[rules]\nt_plus_2 = true"))
    assert main(["backtest", str(cfg)]) == 2
    assert "unknown config key(s): rules.t_plus_2" in capsys.readouterr().err
    assert main(["backtest", str(project / "nope.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_metrics_match_a_hand_computation():
    idx = pd.date_range("2021-01-04", periods=4)
    r = pd.Series([0.10, -0.05, 0.02, -0.01], index=idx)
    b = pd.Series([0.05, -0.02, 0.01, 0.00], index=idx)
    trades = pd.DataFrame({"pnl_net": [5.0, -1.0, 2.0]})
    m = metrics(r, b, trades, pd.Series([0.2, 0.0, 0.1, 0.1]))
    growth = 1.10 * 0.95 * 1.02 * 0.99
    assert m["total_return"] == pytest.approx(growth - 1)
    assert m["annual_return"] == pytest.approx(growth ** (252 / 4) - 1)
    assert m["max_drawdown"] == pytest.approx(0.95 - 1)  # 1.10 peak -> 1.045 trough; later lows are higher
    beta = np.polyfit(b, r, 1)[0]
    assert m["beta"] == pytest.approx(beta)
    assert m["alpha"] == pytest.approx((1 + (r - beta * b).mean()) ** 252 - 1)
    a = r - b
    assert m["information_ratio"] == pytest.approx(a.mean() / a.std() * math.sqrt(252))
    assert m["sharpe"] == pytest.approx(r.mean() / r.std() * math.sqrt(252))
    assert m["win_rate"] == pytest.approx(2 / 3) and m["turnover"] == pytest.approx(0.1)
    assert m["benchmark_return"] == pytest.approx(1.05 * 0.98 * 1.01 - 1)
