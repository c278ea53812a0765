"""The shipped strategies on real A-share bars: sentiment_topk on astock_prices 2019-2021 with a momentum panel
vs CSI 300, and news_event on CSMD prices; every fill is checked against the rules independently."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.backtest import run, trade  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402
from gptquant.market.prices import load_bars, momentum_panel  # noqa: E402

STRATEGIES = Path(__file__).resolve().parents[1] / "strategies"


def load(name):
    spec = importlib.util.spec_from_file_location(f"test_strategy_{name}", STRATEGIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # backtrader looks strategy classes' modules up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def astock(shared_data):
    codes = pd.read_csv(shared_data / "astock_prices" / "codes.csv", dtype={"code": str})
    full = codes[(codes["first_date"] <= "2018-06-01") & (codes["last_date"] >= "2021-11-01")]["code"]
    return load_bars(shared_data / "astock_prices" / "astock_daily.csv", instruments=list(full.sort_values()[:30]),
                     start="2018-10-01", end="2021-11-26", volume_unit="lots")


def test_sentiment_topk_on_astock_prices_with_momentum_vs_csi300(astock, shared_data):
    topk = load("sentiment_topk")
    panel = momentum_panel(astock, 20)
    res = trade(None, "2019-01-02", "2021-11-26", topk.initialize, topk.handle_data, topk.before_trading_start,
                data=astock, panel=panel, benchmark_data=shared_data / "cn_index_daily" / "csi300_000300_daily.csv",
                order_price_field_sell="open", options={"column": "momentum", "top_k": 5, "rebalance_every": 5})
    assert list(res.daily.index) == list(sessions("2019-01-02", "2021-11-26"))
    assert all(math.isfinite(v) for v in res.summary.values()), res.summary
    assert -1 < res.summary["max_drawdown"] < 0 and 0 < res.summary["beta"] < 2
    # more than K names only while a sell the rules refused or cut (limit down, suspension, volume cap) waits
    # for the next rebalance
    o = res.orders
    refused = pd.to_datetime(o.loc[(o["side"] == "sell") & (o["filled"] < o["requested"]), "datetime"])
    over = res.daily.index[res.daily["n_positions"] > 5]
    days = res.daily.index
    assert all(((refused <= d) & (refused >= days[max(0, days.get_loc(d) - 5)])).any() for d in over)

    fills = res.orders[res.orders["filled"] > 0].copy()
    assert len(fills) > 100
    bars = astock.set_index(["instrument", "datetime"])
    fills["datetime"] = pd.to_datetime(fills["datetime"])
    bar = bars.loc[list(zip(fills["instrument"], fills["datetime"]))]
    # every fill is at that session's open, on a session with volume, within the volume cap, in lots for buys
    assert (fills["price"].to_numpy() == bar["open"].to_numpy()).all()
    assert (bar["volume"].to_numpy() > 0).all() and (fills["filled"].to_numpy() <= 0.025 * bar["volume"].to_numpy()).all()
    assert (fills.loc[fills["side"] == "buy", "filled"] % 100 == 0).all()
    # no buy at or within a tick of the 10 % / 20 % limit-up price (forward-adjusted prices: one-tick tolerance)
    buys = fills["side"].to_numpy() == "buy"
    ratio = [0.2 if c.startswith("30") and d >= pd.Timestamp("2020-08-24") else 0.1
             for c, d in zip(fills["instrument"], fills["datetime"])]
    up = bar["pre_close"].to_numpy() * (1 + pd.Series(ratio).to_numpy())
    assert (bar["open"].to_numpy()[buys] < up[buys] - 0.005).all()
    # T+1: nothing sold on the session it was bought
    bought = set(zip(fills.loc[fills["side"] == "buy", "instrument"], fills.loc[fills["side"] == "buy", "datetime"]))
    sold = set(zip(fills.loc[fills["side"] == "sell", "instrument"], fills.loc[fills["side"] == "sell", "datetime"]))
    assert not bought & sold


def test_news_event_native_strategy_on_csmd_prices(shared_data):
    bars = load_bars(shared_data / "csmd_news_prices" / "csmd_prices.csv", start="2021-01-04", end="2021-12-31")
    panel = momentum_panel(bars, 5)
    ev = load("news_event")
    res = run(ev.NewsEvent, data=bars, panel=panel, start="2021-02-01", end="2021-12-31",
              benchmark_data=shared_data / "cn_index_daily", column="momentum", enter_above=0.1, hold_sessions=3)
    trades = res.trades
    assert len(trades) > 5 and (trades["sessions_held"] >= 1).all()
    entries = res.orders[(res.orders["side"] == "buy") & (res.orders["filled"] > 0)]
    scores = panel["momentum"]
    prev = {d: p for d, p in zip(sessions("2021-02-01", "2021-12-31")[1:], sessions("2021-02-01", "2021-12-31"))}
    # each entry fills the session after a signal above the threshold
    assert all(scores.loc[(prev[pd.Timestamp(d)], i)] >= 0.1 for d, i in zip(entries["datetime"], entries["instrument"]))
