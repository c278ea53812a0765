"""The backtest summary cross-checked against empyrical-reloaded (the dev extra) on the same daily returns."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

ep = pytest.importorskip("empyrical")

from gptquant.backtest.result import YEAR, metrics  # noqa: E402


def series(seed: int, drift: float, n: int = 300) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2021-01-04", periods=n)
    b = pd.Series(rng.normal(0.0003, 0.012, n), index=idx)
    r = pd.Series(drift + 0.8 * b.to_numpy() + rng.normal(0, 0.008, n), index=idx)
    return r, b


@pytest.mark.parametrize("seed,drift", [(0, 0.0008), (1, -0.0015), (2, 0.0)])
def test_summary_equals_empyrical_on_the_same_daily_returns(seed, drift):
    r, b = series(seed, drift)
    r.iloc[0] = -0.03  # a loss on the first day: the drawdown is measured from the starting capital, as empyrical does
    m = metrics(r, b)
    expected = {
        "total_return": ep.cum_returns_final(r),
        "annual_return": ep.annual_return(r, period="daily"),
        "volatility": ep.annual_volatility(r, period="daily"),
        "sharpe": ep.sharpe_ratio(r, period="daily"),
        "max_drawdown": ep.max_drawdown(r),
        "alpha": ep.alpha(r, b, period="daily"),
        "beta": ep.beta(r, b),
        "benchmark_return": ep.cum_returns_final(b),
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(float(value), rel=1e-9, abs=1e-12), key
    # the one convention that differs: empyrical's excess_sharpe is per day, the summary's information ratio
    # is annualised like the sharpe ratio (× √252)
    assert m["information_ratio"] == pytest.approx(float(ep.excess_sharpe(r, b)) * math.sqrt(YEAR), rel=1e-9)
    assert m["information_ratio"] != pytest.approx(float(ep.excess_sharpe(r, b)), rel=1e-3)
