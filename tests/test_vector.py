"""The vectorised top-K engine against the event engine: a grid where every point is cross-checked, on a market
built so that each A-share rule bites (suspensions, limit-up/down opens, the volume cap, the cash cut, the
minimum fee, the stamp-duty change of 2023-08-28, ChiNext's 20 % limit), and a sweep that refuses to report
when the two disagree."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.backtest.job import load_config, run_config  # noqa: E402
from gptquant.backtest.sweep import run_sweep  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CODES = ["600000", "600001", "600002", "000001", "000002", "300750", "300751", "601318", "601319", "002001"]

CONFIG = '''
[data]
bars = "bars.csv"
benchmark_data = "csi300.csv"
[panel]
path = "panel.parquet"
[backtest]
start = "2023-07-04"
end = "2023-09-29"
capital_base = 200000
[strategy]
module = "strat.py"
[strategy.params]
column = "score"
top_k = 3
rebalance_every = 5
cash_buffer = 0.01
[rules]
order_price_field_sell = "{sell}"
volume_limit = 0.02
[sweep]
top_k = [1, 3, 6]
rebalance_every = [1, 4]
cash_buffer = [0.0, 0.02]
'''


def market(root: Path):
    days = sessions("2023-06-26", "2023-09-29")
    rng = np.random.default_rng(5)
    bars, panel = [], []
    for n, code in enumerate(CODES):
        ratio = 0.2 if code.startswith("300") else 0.1
        close, rows = 8.0 + 3 * n, []
        for i, d in enumerate(days):
            if (n + i) % 17 == 0 and i > 3:  # a missing bar: suspended
                continue
            move = rng.choice([ratio, -ratio]) if rng.random() < 0.06 else rng.normal(0, 0.025)
            opn = round(close * (1 + move), 2) if abs(move) == ratio else round(close * (1 + rng.normal(0, 0.01)), 2)
            close = round(max(opn * (1 + rng.normal(0, 0.02)), 1.0), 2)
            volume = float(rng.choice([2e4, 5e5, 5e6]))  # 2 % of 20,000 shares caps an order at 400
            rows.append(dict(date=d.strftime("%Y-%m-%d"), code=code, open=opn, high=max(opn, close),
                             low=min(opn, close), close=close, volume=volume))
        bars.append(pd.DataFrame(rows))
        panel.append(pd.DataFrame({"datetime": days, "instrument": code + (".SH" if code[0] == "6" else ".SZ"),
                                   "score": np.where(rng.random(len(days)) < 0.1, np.nan, rng.normal(size=len(days)))}))
    pd.concat(bars).to_csv(root / "bars.csv", index=False)
    pd.concat(panel).set_index(["datetime", "instrument"]).to_parquet(root / "panel.parquet")
    pd.DataFrame({"date": sessions("2023-06-01", "2023-09-29"), "code": "000300",
                  "close": 4000 + np.arange(len(sessions("2023-06-01", "2023-09-29")))}).to_csv(root / "csi300.csv", index=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("vector")
    market(root)
    shutil.copy(REPO / "strategies" / "sentiment_topk.py", root / "strat.py")
    return root


@pytest.mark.parametrize("sell", ["open", "close"])
def test_every_grid_point_equals_the_event_engine(project, sell):
    cfg = project / f"sweep_{sell}.toml"
    cfg.write_text(CONFIG.format(sell=sell))
    table = run_sweep(cfg, project / f"out_{sell}", engine="vector", check="all", progress=False)
    assert len(table) == 12 and (table["status"] == "ok").all()
    rows = [json.loads(p.read_text()) for p in sorted((project / f"out_{sell}").glob("task-*.json"))]
    assert len(rows) == 12 and all(r["relative_difference"] <= 1e-6 for r in rows)
    # the rules did bite in these runs: the equality covers them
    reasons = run_config(load_config(cfg), project, overrides={"top_k": 6, "rebalance_every": 1,
                                                                "cash_buffer": 0.0}).orders["reason"].fillna("")
    for why in ("suspended", "limit up", "volume_limit", "cash:"):
        assert reasons.str.startswith(why).any() or reasons.str.contains(why).any(), why


NEWS_EVENT = CONFIG.split("[strategy.params]")[0].replace('module = "strat.py"', 'module = "news_event.py"') + '''
[strategy.params]
column = "score"
enter_above = 1.0
weight = 0.3
hold_sessions = 3
[rules]
volume_limit = 0.02
[sweep]
enter_above = [0.5, 1.0]
hold_sessions = [1, 3]
weight = [0.2, 0.5]
'''


def test_news_event_grid_equals_the_event_engine_at_every_point(project):
    shutil.copy(REPO / "strategies" / "news_event.py", project / "news_event.py")
    cfg = project / "news_event.toml"
    cfg.write_text(NEWS_EVENT)
    table = run_sweep(cfg, project / "out_news", engine="vector", check="all", progress=False)
    assert len(table) == 8 and (table["status"] == "ok").all()
    rows = [json.loads(p.read_text()) for p in sorted((project / "out_news").glob("task-*.json"))]
    assert all(r["relative_difference"] <= 1e-6 for r in rows)
    # exits on the clock, exits on the score, entries cut by the volume cap and cash, refusals: all covered
    orders = run_config(load_config(cfg), project, overrides={"hold_sessions": 1, "weight": 0.5}).orders
    assert {"filled", "partial", "rejected"} <= set(orders["status"])


def test_a_sweep_whose_vector_run_disagrees_is_not_reported(project):
    strat = (REPO / "strategies" / "sentiment_topk.py").read_text()
    (project / "drifted.py").write_text(strat.replace("weight = (1 - context.cash_buffer) / context.top_k",
                                                      "weight = 0.5 / context.top_k"))
    cfg = project / "drifted.toml"
    cfg.write_text(CONFIG.format(sell="open").replace('module = "strat.py"', 'module = "drifted.py"'))
    with pytest.raises(GptquantError, match="disagrees with the event engine"):
        run_sweep(cfg, project / "out_drifted", engine="vector", progress=False)
    assert not (project / "out_drifted" / "sweep_results.parquet").exists()


def test_a_strategy_without_a_vector_family_is_refused_by_name(project):
    (project / "plain.py").write_text("def initialize(context):\n    pass\n")
    cfg = project / "plain.toml"
    cfg.write_text(CONFIG.format(sell="open").replace('module = "strat.py"', 'module = "plain.py"'))
    with pytest.raises(GptquantError, match="VECTOR_FAMILY"):
        run_sweep(cfg, project / "out_plain", engine="vector", progress=False)


def test_cli_vector_sweep_checks_a_sample_and_prints_the_best_rows(project, capsys):
    from gptquant.cli import main

    cfg = project / "cli.toml"
    cfg.write_text(CONFIG.format(sell="open"))
    assert main(["backtest", "--sweep", str(cfg), "--engine", "vector", "--out", str(project / "out_cli")]) == 0
    assert "12 tasks, 12 ok, 0 failed" in capsys.readouterr().out
    rows = [json.loads(p.read_text()) for p in sorted((project / "out_cli").glob("task-*.json"))]
    checked = [r for r in rows if "relative_difference" in r]
    finals = sorted(r["final_value"] for r in rows)
    assert len(checked) == 3 and {r["final_value"] for r in checked} >= {finals[0], finals[-1]}
    assert main(["backtest", str(cfg), "--check", "all"]) == 2  # --check belongs to --sweep
