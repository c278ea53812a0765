"""strategies/bigquant_stockranker.py run by `gptquant backtest backtests/bigquant_stockranker.toml` on the demo
world, with a news panel built from the world's labelled news (the GPT panel's shape without a model)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.cli import main  # noqa: E402
from gptquant.demo_world import make_world  # noqa: E402
from gptquant.market.calendar import align_to_sessions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_out")
    paths = make_world(out / "world", corpus_docs=50)
    news = pd.read_csv(paths["news"])
    news["datetime"] = align_to_sessions(news["datetime"])
    news["sentiment_ewm"] = news["label"] - 1.0  # negative -1, neutral 0, positive +1
    panel = news.groupby(["datetime", "instrument"])[["sentiment_ewm"]].mean()
    panel.to_parquet(out / "panel.parquet")
    return out


def test_gptquant_backtest_runs_the_bigquant_stockranker_config(demo_out, monkeypatch, capsys):
    monkeypatch.setenv("GPTQUANT_DEMO_OUT", str(demo_out))
    out = demo_out / "bt"
    assert main(["backtest", str(REPO / "backtests" / "bigquant_stockranker.toml"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    orders = pd.read_csv(out / "orders.csv")
    daily = pd.read_csv(out / "daily.csv", index_col=0, parse_dates=True)
    assert daily.index[0] == pd.Timestamp("2023-02-01") and math.isfinite(summary["total_return"])
    # session 0 (staging): 1/hold_days of the book goes to the 5 best panel rows of that morning, by T.norm(1/log(i+2)),
    # sized in lots from the previous close, filled at that session's open
    panel = pd.read_parquet(demo_out / "panel.parquet")
    row = panel.xs(pd.Timestamp("2023-02-01"), level="datetime")["sentiment_ewm"]
    top = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    bars = pd.read_csv(demo_out / "world" / "prices.csv")
    prev = bars[bars["date"] == "2023-01-31"].set_index("instrument")["close"]
    weights = [1 / math.log(i + 2) for i in range(5)]
    want = [math.floor(1e6 / 5 * w / sum(weights) / prev[c] / 100) * 100 for (c, _), w in zip(top, weights)]
    first = orders[orders["created"] == "2023-02-01"]
    assert first["instrument"].tolist() == [c for c, _ in top] and first["requested"].tolist() == want
    assert (first["datetime"] == "2023-02-01").all()  # before_trading_start fills at the same session's open
    sells = orders[orders["side"] == "sell"]
    assert len(sells) and pd.to_datetime(sells["created"]).min() >= pd.Timestamp("2023-02-08")  # none while staging
