"""A-share rules, each on a few synthetic sessions with the expected numbers worked out by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.backtest import Rules, trade  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

CAPITAL = 1_000_000.0


def flat_bars(code, start, end, price=10.0, volume=1e7, **overrides):
    """Constant bars; overrides maps 'YYYY-MM-DD' -> dict of fields for that session (None drops the bar)."""
    rows = []
    for d in sessions(start, end):
        row = dict(date=d.strftime("%Y-%m-%d"), code=code, open=price, high=price, low=price, close=price, volume=volume)
        change = overrides.get(d.strftime("%Y-%m-%d"), {})
        if change is None:
            continue
        row.update(change)
        rows.append(row)
    return pd.DataFrame(rows)


def scripted(script, phase="open"):
    """A BigQuant strategy that runs script[trading_day_index](context, data) in the given phase."""
    seen = {}

    def initialize(context):
        context.seen = seen

    def call(context, data):
        fn = script.get(context.trading_day_index)
        if fn:
            fn(context, data)

    return dict(initialize=initialize, **({"before_trading_start": call} if phase == "open" else {"handle_data": call}))


def run(bars, start, end, script, phase="open", **kw):
    kw.setdefault("order_price_field_sell", "open")
    return trade(None, start, end, data=bars, benchmark=None, capital_base=CAPITAL, **scripted(script, phase), **kw)


def only(orders, **match):
    sel = orders
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, orders
    return sel.iloc[0]


def test_same_day_sell_is_refused_by_t_plus_1_and_allowed_next_session():
    bars = flat_bars("600000", "2021-03-01", "2021-03-10")
    res = run(bars, "2021-03-02", "2021-03-10", {
        0: lambda c, d: (c.order("600000", 1000), c.order("600000", -1000)),
        1: lambda c, d: c.order("600000", -1000),
    }, order_price_field_sell="close")
    o = res.orders
    refused = only(o, side="sell", status="rejected")
    assert refused["reason"].startswith("T+1") and str(refused["datetime"]) == "2021-03-02"
    sold = only(o, side="sell", status="filled")
    assert str(sold["datetime"]) == "2021-03-03" and sold["filled"] == 1000


def test_odd_lot_buy_is_rounded_down_to_whole_lots_and_minimum_fee_applies():
    bars = flat_bars("600000", "2021-03-01", "2021-03-05")
    res = run(bars, "2021-03-02", "2021-03-05", {0: lambda c, d: c.order("600000", 250)})
    buy = only(res.orders, side="buy")
    assert buy["filled"] == 200 and buy["status"] == "partial" and "lot" in buy["reason"]
    # 200 × 10 = 2,000 CNY; 0.03 % is 0.60, so the 5 CNY minimum is charged
    assert buy["commission"] == pytest.approx(5.0)
    assert res.daily["cash"].iloc[0] == pytest.approx(CAPITAL - 2000 - 5)


@pytest.mark.parametrize("day, stamp", [("2023-08-25", 0.001), ("2023-08-28", 0.0005)])
def test_stamp_duty_before_and_from_2023_08_28(day, stamp):
    bars = flat_bars("600000", "2023-08-21", "2023-08-31")
    days = list(sessions("2023-08-22", "2023-08-31").strftime("%Y-%m-%d"))
    res = run(bars, "2023-08-22", "2023-08-31", {0: lambda c, d: c.order("600000", 10000),
                                                 days.index(day): lambda c, d: c.order("600000", -10000)})
    sell = only(res.orders, side="sell")
    assert str(sell["datetime"]) == day
    # 10,000 × 10 = 100,000 CNY: commission 30 plus stamp duty 100 (0.1 %) or 50 (0.05 %)
    assert sell["commission"] == pytest.approx(30 + 100_000 * stamp)
    assert res.daily["cash"].iloc[-1] == pytest.approx(CAPITAL - 30 - 30 - 100_000 * stamp)


def test_buy_refused_at_limit_up_and_sell_refused_at_limit_down():
    # previous close 10: main-board limits are 11.00 and 9.00
    bars = flat_bars("600000", "2021-03-01", "2021-03-10", **{
        "2021-03-03": dict(open=11.0, high=11.0, close=11.0),    # buy at 11.00: limit up
        "2021-03-04": dict(open=10.99, high=11.0, close=10.0),   # prev close 11 -> limit 12.10; buy fills
        "2021-03-05": dict(open=9.0, low=9.0, close=9.0),        # prev close 10 -> limit down 9.00
    })
    res = run(bars, "2021-03-02", "2021-03-10", {
        1: lambda c, d: c.order("600000", 1000),
        2: lambda c, d: c.order("600000", 1000),
        3: lambda c, d: c.order("600000", -1000),
        4: lambda c, d: c.order("600000", -1000),
    })
    o = res.orders.set_index("datetime")
    o.index = o.index.astype(str)
    assert o.loc["2021-03-03", "status"] == "rejected" and o.loc["2021-03-03", "reason"].startswith("limit up")
    assert o.loc["2021-03-04", "status"] == "filled" and o.loc["2021-03-04", "price"] == 10.99
    assert o.loc["2021-03-05", "status"] == "rejected" and o.loc["2021-03-05", "reason"].startswith("limit down")
    assert o.loc["2021-03-08", "status"] == "filled"


def test_buy_refused_on_a_suspended_session_and_can_trade_says_so():
    bars = flat_bars("600000", "2021-03-01", "2021-03-10", **{"2021-03-03": None})
    seen = {}

    def look(c, d):
        seen["can_trade"] = d.can_trade("600000")
        seen["price"] = d.current("600000", "price")  # before the open: the last close
        c.order("600000", 1000)

    res = run(bars, "2021-03-02", "2021-03-10", {1: look})
    buy = only(res.orders, side="buy")
    assert buy["status"] == "rejected" and buy["reason"].startswith("suspended")
    assert seen == {"can_trade": False, "price": 10.0}


def test_chinext_limit_is_10_percent_before_and_20_percent_from_2020_08_24():
    bars = flat_bars("300001", "2020-08-18", "2020-08-28", **{
        "2020-08-21": dict(open=11.0, high=11.0, close=10.0),   # 10 % limit: refused
        "2020-08-24": dict(open=11.0, high=11.0, close=10.0),   # 20 % limit from today: 11.00 fills
        "2020-08-25": dict(open=12.0, high=12.0, close=10.0),   # 12.00 is the 20 % limit: refused
    })
    res = run(bars, "2020-08-19", "2020-08-28", {
        2: lambda c, d: c.order("300001", 100),
        3: lambda c, d: c.order("300001", 100),
        4: lambda c, d: c.order("300001", 100),
    })
    st = dict(zip(res.orders["datetime"].astype(str), res.orders["status"]))
    assert st == {"2020-08-21": "rejected", "2020-08-24": "filled", "2020-08-25": "rejected"}


def test_volume_cap_limits_an_order_to_its_share_of_the_bar_volume():
    bars = flat_bars("600000", "2021-03-01", "2021-03-05", volume=10_000)
    res = run(bars, "2021-03-02", "2021-03-05", {0: lambda c, d: c.order("600000", 5000)}, volume_limit=0.025)
    buy = only(res.orders, side="buy")
    # 2.5 % of 10,000 shares = 250, rounded down to lots = 200; the rest is cancelled
    assert buy["filled"] == 200 and buy["status"] == "partial" and buy["reason"].startswith("volume_limit")
    res = run(bars, "2021-03-02", "2021-03-05", {0: lambda c, d: c.order("600000", 5000)}, volume_limit=None)
    assert only(res.orders, side="buy")["filled"] == 5000


def test_buy_is_cut_to_the_cash_available_including_commission():
    bars = flat_bars("600000", "2021-03-01", "2021-03-05", price=100.0)
    res = run(bars, "2021-03-02", "2021-03-05", {0: lambda c, d: c.order("600000", 20_000)}, volume_limit=None)
    buy = only(res.orders, side="buy")
    # 1,000,000 / (100 × 1.0003) = 9997 shares -> 9,900 in lots; cost 990,000 + 297 commission
    assert buy["filled"] == 9900 and buy["reason"].startswith("cash")
    assert res.daily["cash"].iloc[0] == pytest.approx(CAPITAL - 990_000 - 297)


def test_handle_data_orders_fill_next_session_and_see_only_that_day():
    bars = flat_bars("600000", "2021-03-01", "2021-03-08", **{
        "2021-03-02": dict(open=10.0, close=10.5, high=10.5),
        "2021-03-03": dict(open=10.4, close=10.2, high=10.4, low=10.2),
    })
    seen = {}

    def day0(c, d):
        seen["close"] = d.current("600000", "close")
        seen["history"] = list(d.history("600000", "close", 5))
        c.order("600000", 100)

    res = run(bars, "2021-03-02", "2021-03-08", {0: day0}, phase="close")
    buy = only(res.orders, side="buy")
    assert str(buy["created"]) == "2021-03-02" and str(buy["datetime"]) == "2021-03-03" and buy["price"] == 10.4
    assert seen["close"] == 10.5 and seen["history"] == [10.0, 10.5]  # warm-up session + D; nothing after D


def test_before_the_open_sees_yesterdays_bar_and_todays_panel_row():
    bars = flat_bars("600000", "2021-03-01", "2021-03-08", **{"2021-03-03": dict(open=10.3, close=10.8, high=10.8)})
    panel = pd.DataFrame({"datetime": pd.to_datetime(["2021-03-03"]), "instrument": ["600000.SH"], "score": [0.7]})
    panel = panel.set_index(["datetime", "instrument"])
    seen = {}

    def day1(c, d):
        seen.update(close=d.current("600000", "close"), open=d.current("600000", "open"),
                    score=d.current("600000", "score"), dt=d.current_dt)

    run(bars, "2021-03-02", "2021-03-08", {1: day1}, panel=panel)
    assert seen == {"close": 10.0, "open": 10.0, "score": 0.7, "dt": pd.Timestamp("2021-03-03")}
    run(bars, "2021-03-02", "2021-03-08", {1: day1}, panel=panel, panel_at="close")
    assert math.isnan(seen["score"])  # a 15:00-cutoff panel row is not known before the open


def test_order_target_percent_counts_pending_orders_and_portfolio_tracks_positions():
    bars = flat_bars("600000", "2021-03-01", "2021-03-08")
    seen = {}

    def day0(c, d):
        c.order_target_percent("600000", 0.5)
        c.order_target_percent("600000", 0.5)  # already pending: no second order

    def day1(c, d):
        p = c.portfolio
        seen.update(amount=p.positions["600000.SH"].amount, cash=p.cash)

    res = run(bars, "2021-03-02", "2021-03-08", {0: day0, 1: day1})
    assert len(res.orders) == 1 and res.orders["filled"].iloc[0] == 50_000
    assert seen == {"amount": 50_000, "cash": pytest.approx(CAPITAL - 500_000 - 150)}


def test_native_strategy_gets_the_same_rules():
    import backtrader as bt

    from gptquant.backtest import run as native_run

    class BuyTwice(bt.Strategy):
        def next(self):
            if len(self) in (1, 2):
                self.buy(data=self.datas[0], size=150)

    bars = flat_bars("600000", "2021-03-01", "2021-03-08", **{"2021-03-04": dict(open=11.0, high=11.0)})
    res = native_run(BuyTwice, data=bars, start="2021-03-02", end="2021-03-08", benchmark=None)
    o = res.orders
    assert list(o["datetime"].astype(str)) == ["2021-03-03", "2021-03-04"]  # next() at D fills at D+1
    assert list(o["filled"]) == [100, 0] and o["status"].iloc[1] == "rejected"


def test_bad_rule_values_are_named():
    with pytest.raises(GptquantError, match="order_price_field_buy"):
        Rules(order_price_field_buy="vwap")
    with pytest.raises(GptquantError, match="unknown rule"):
        Rules().replace(t_plus_2=True)
