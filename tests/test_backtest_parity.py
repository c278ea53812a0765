"""gptquant's engine against plain backtrader: the same bt.Strategy, the same orders and final value when the
A-share rules are off; on a universe with a missing bar the two differ in the way the README describes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

bt = pytest.importorskip("backtrader")

from gptquant.backtest import Rules, make_cerebro  # noqa: E402
from gptquant.backtest.engine import run_cerebro  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

CAPITAL = 1_000_000.0
RULES_OFF = Rules(t_plus_1=False, lot_size=1, price_limits=False, volume_limit=None, order_price_field_sell="open",
                  min_commission=0.0, stamp_duty=(), cash_policy="backtrader")


class TopMomentum(bt.Strategy):
    """Every `every` sessions: hold the k names with the best `lookback`-bar return, `weight` of value each."""

    params = (("k", 5), ("every", 5), ("lookback", 10), ("weight", 0.2))

    def start(self):
        self.fills = []

    def notify_order(self, order):
        if order.status in (order.Completed, order.Margin, order.Rejected):
            self.fills.append((self.datetime.date(0), order.data._name, order.getstatusname(), order.executed.size,
                               round(order.executed.price, 10), round(order.executed.comm, 8)))

    def next(self):
        if len(self) <= self.p.lookback or len(self) % self.p.every:
            return
        ranked = sorted(self.datas, key=lambda d: (-(d.close[0] / d.close[-self.p.lookback]), d._name))
        top = ranked[:self.p.k]
        for d in self.datas:
            if self.getposition(d).size and d not in top:
                self.order_target_percent(d, 0)
        for d in top:
            self.order_target_percent(d, self.p.weight)


def random_bars(n=24, start="2021-01-04", end="2021-06-30", seed=3):
    rng = np.random.default_rng(seed)
    days = sessions(start, end)
    rows = []
    for i in range(n):
        close = 10 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, len(days))))
        opn = np.r_[10, close[:-1]] * np.exp(rng.normal(0, 0.01, len(days)))
        rows.append(pd.DataFrame({"datetime": days, "instrument": f"{600000 + i}.SH", "open": opn,
                                  "high": np.maximum(opn, close), "low": np.minimum(opn, close), "close": close,
                                  "volume": 1e7}))
    return pd.concat(rows, ignore_index=True)


def run_plain(bars, strategy, **params):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(CAPITAL)
    cerebro.broker.addcommissioninfo(bt.CommInfoBase(commission=0.0003, stocklike=True, percabs=True,
                                                     commtype=bt.CommInfoBase.COMM_PERC))
    for name, g in bars.groupby("instrument"):
        cerebro.adddata(bt.feeds.PandasData(dataname=g.set_index("datetime")[["open", "high", "low", "close", "volume"]]),
                        name=name)
    cerebro.addstrategy(strategy, **params)
    return cerebro.run()[0]


def run_gptquant(bars, strategy, rules=RULES_OFF, **params):
    return run_cerebro(make_cerebro(bars, None, capital_base=CAPITAL, rules=rules), strategy, **params)


@pytest.mark.parametrize("weight", [0.19, 0.2])  # 0.2 x 5 spends every yuan: some buys are refused for cash
def test_rules_off_places_and_fills_the_same_orders_as_plain_backtrader(weight):
    bars = random_bars()
    plain, ours = run_plain(bars, TopMomentum, weight=weight), run_gptquant(bars, TopMomentum, weight=weight)
    assert len(plain.fills) > 50 and plain.fills == ours.fills
    assert abs(ours.broker.getvalue() / plain.broker.getvalue() - 1) <= 1e-9
    refused = [f for f in plain.fills if f[2] == "Margin"]
    assert bool(refused) == (weight == 0.2)
    if refused:  # the A-share cash policy fills them cut down to what the cash affords (sells first) instead
        a_share = run_gptquant(bars, TopMomentum, rules=RULES_OFF.replace(cash_policy="a_share"), weight=weight)
        assert not [f for f in a_share.fills if f[2] == "Margin"]
        assert a_share.broker.getvalue() != pytest.approx(plain.broker.getvalue(), rel=1e-9)


class BuyOnSecondSession(bt.Strategy):
    def start(self):
        self.fills = []

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append((self.datetime.date(0), order.executed.price))

    def next(self):
        if len(self) == 2:
            self.buy(data=self.getdatabyname("600001.SH"), size=1000)


def test_an_order_over_a_missing_bar_waits_for_the_next_bar_in_backtrader_and_is_refused_by_gptquant():
    days = sessions("2021-03-01", "2021-03-05")  # 5 sessions; 600001.SH has no bar on the third (suspended)
    rows = []
    for code in ("600000.SH", "600001.SH"):
        for i, d in enumerate(days):
            if code == "600001.SH" and i == 2:
                continue
            price = 10.0 + i if code == "600001.SH" else 5.0
            rows.append(dict(datetime=d, instrument=code, open=price - 0.5, high=price, low=price - 0.5, close=price,
                             volume=1e6))
    bars = pd.DataFrame(rows)
    plain, ours = run_plain(bars, BuyOnSecondSession), run_gptquant(bars, BuyOnSecondSession)
    # backtrader: the feed does not move on session 3, so the order placed after session 2 waits and fills at the
    # feed's next bar, session 4's open (12.5); valued at the last close (14): 1e6 - 12,500 - 3.75 commission + 14,000
    assert plain.fills == [(days[3].date(), 12.5)]
    assert plain.broker.getvalue() == pytest.approx(CAPITAL - 12_500 - 3.75 + 14_000, abs=1e-6)
    # gptquant: session 3 is a suspension (no bar): the order is refused for the day and not carried over
    log = ours.broker.order_log
    assert [(o["datetime"], o["status"], o["reason"]) for o in log] == \
        [(days[2].date(), "rejected", "suspended: no bar this session")]
    assert ours.broker.getvalue() == CAPITAL
