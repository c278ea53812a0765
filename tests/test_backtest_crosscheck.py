"""The engine's equity curve against an independent vectorised pandas computation of the same trades and costs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.backtest import trade  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

CAPITAL = 1_000_000.0
WEIGHTS = {"600000.SH": 0.3, "000001.SZ": 0.3, "601318.SH": 0.3}
EXIT = ("000001.SZ", 20)  # sold at the open of the 21st session


def random_bars(start="2022-01-04", end="2022-03-31", seed=7):
    rng = np.random.default_rng(seed)
    days = sessions(start, end)
    rows = []
    for code, p0 in zip(WEIGHTS, (10.0, 15.0, 50.0)):
        close = np.round(p0 * np.exp(np.cumsum(rng.normal(0, 0.012, len(days)))), 2)
        opn = np.round(np.r_[p0, close[:-1]] * (1 + rng.normal(0, 0.004, len(days))), 2)
        rows.append(pd.DataFrame({"date": days, "code": code, "open": opn, "high": np.maximum(opn, close),
                                  "low": np.minimum(opn, close), "close": close, "volume": 5e7}))
    return pd.concat(rows, ignore_index=True)


def vectorised(bars, start):
    """Shares sized from the last close before the first session, filled at opens; costs as the A-share defaults."""
    close = bars.pivot(index="date", columns="code", values="close")
    opn = bars.pivot(index="date", columns="code", values="open")
    close.columns = opn.columns = [c for c in close.columns]
    days = close.index[close.index >= pd.Timestamp(start)]
    prev = close.loc[close.index < days[0]].iloc[-1]
    w = pd.Series(WEIGHTS)
    shares = (np.floor(CAPITAL * w / prev / 100) * 100)
    value_in = shares * opn.loc[days[0]]
    fee = np.maximum(value_in * 0.0003, 5.0)
    held = pd.DataFrame(np.tile(shares.to_numpy(), (len(days), 1)), index=days, columns=shares.index)
    cash = pd.Series(CAPITAL - (value_in + fee).sum(), index=days)
    code, k = EXIT
    held.loc[days[k]:, code] = 0
    proceeds = shares[code] * opn.loc[days[k], code]
    cash.loc[days[k]:] += proceeds - max(proceeds * 0.0003, 5.0) - proceeds * 0.001
    return cash + (held * close.loc[days]).sum(axis=1)


def test_buy_hold_and_exit_equity_matches_vectorised_pandas():
    raw = random_bars()
    start = "2022-01-05"

    def before(context, data):
        if context.trading_day_index == 0:
            for sym, wt in WEIGHTS.items():
                context.order_target_percent(sym, wt)
        if context.trading_day_index == EXIT[1]:
            context.order_target(EXIT[0], 0)

    res = trade(None, start, "2022-03-31", lambda c: None, None, before, data=raw, benchmark=None,
                capital_base=CAPITAL, order_price_field_sell="open", volume_limit=None)
    assert (res.orders["status"] == "filled").all() and len(res.orders) == 4
    expected = vectorised(raw.assign(date=pd.to_datetime(raw["date"])), start)
    engine = res.daily["portfolio_value"]
    assert list(engine.index) == list(expected.index)
    # same trades and costs: agreement to a millionth of a CNY per million (float rounding only)
    np.testing.assert_allclose(engine.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=1e-6)
