"""Factor analysis: forward-return timing, IC / Rank IC / quantiles / turnover against direct computations."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gptquant.analysis.factor import (analyze, factor_ic, factor_turnover, forward_returns, ic_summary, long_short,
                                      quantile_returns)
from gptquant.errors import GptquantError
from gptquant.market.calendar import sessions


def planted(n_days=70, n_inst=24, strength=0.004, seed=3, missing=0.1):
    """Opens whose next-session return is strength * signal + noise; the panel holds the signal (with gaps)."""
    rng = np.random.default_rng(seed)
    days = sessions("2024-01-01", "2024-12-31")[:n_days]
    insts = [f"{600000 + i:06d}.SH" for i in range(n_inst)]
    sig = rng.normal(size=(n_days, n_inst))
    ret = strength * sig + rng.normal(0, 0.01, (n_days, n_inst))
    opens = 10 * np.exp(np.vstack([np.zeros(n_inst), np.cumsum(ret, axis=0)]))[:-1]
    bars = pd.DataFrame({"datetime": np.repeat(days, n_inst), "instrument": np.tile(insts, n_days),
                         "open": opens.ravel(), "close": opens.ravel() * 1.001})
    index = pd.MultiIndex.from_arrays([np.repeat(days, n_inst), np.tile(insts, n_days)], names=["datetime", "instrument"])
    panel = pd.DataFrame({"s": sig.ravel()}, index=index)
    panel = panel[rng.random(len(panel)) > missing]  # not every instrument has news every day
    return panel, bars


def test_forward_returns_are_open_to_open_from_the_signal_session():
    days = sessions("2024-01-02", "2024-01-10")
    bars = pd.DataFrame({"datetime": list(days[:5]) + [days[0], days[2], days[3]],
                         "instrument": ["A.SH"] * 5 + ["B.SZ"] * 3,  # B has no bar on days[1] (suspended)
                         "open": [10, 11, 12.1, 11, 10, 5, 6, 3]})
    fwd = forward_returns(bars, horizons=(1, 2))
    assert list(fwd.columns) == ["1D", "2D"]
    a = fwd.xs("A.SH", level="instrument")
    assert a.loc[days[0], "1D"] == pytest.approx(0.1)
    assert a.loc[days[0], "2D"] == pytest.approx(0.21)
    assert a.loc[days[2], "2D"] == pytest.approx(10 / 12.1 - 1)
    assert np.isnan(a.loc[days[4], "1D"])  # no later bar
    b = fwd.xs("B.SZ", level="instrument")
    assert np.isnan(b.loc[days[0], "1D"])  # next session suspended: no return, not a skip to the day after
    assert b.loc[days[0], "2D"] == pytest.approx(0.2)
    close = forward_returns(bars.assign(close=bars["open"] * 2), horizons=(1,), price="close")
    assert close.loc[(days[0], "A.SH"), "1D"] == pytest.approx(0.1)


def test_bad_price_tables_are_named():
    bars = pd.DataFrame({"datetime": ["2024-01-02", "2024-01-02"], "instrument": ["A", "A"], "open": [1.0, 2.0]})
    with pytest.raises(GptquantError, match="more than one bar for A"):
        forward_returns(bars)
    with pytest.raises(GptquantError, match="row 2"):
        forward_returns(bars.assign(instrument=["A", "B"], open=[1.0, 0.0]))
    with pytest.raises(GptquantError, match="open"):
        forward_returns(bars.drop(columns="open"))


def direct_ic(panel, fwd, h):
    """Per-session Pearson and Spearman with numpy/scipy, one session at a time."""
    joined = panel.join(fwd, how="inner").dropna()
    ic, ric = {}, {}
    for day, g in joined.groupby(level="datetime"):
        if len(g) < 5:
            continue
        ic[day] = np.corrcoef(g["s"], g[h])[0, 1]
        ric[day] = stats.spearmanr(g["s"], g[h]).statistic
    return pd.Series(ic), pd.Series(ric)


def test_ic_and_rank_ic_match_a_direct_computation():
    panel, bars = planted()
    fwd = forward_returns(bars)
    ic = factor_ic(panel["s"], fwd)
    for h in ("1D", "5D"):
        exp_ic, exp_ric = direct_ic(panel, fwd[["1D", "5D", "10D"]], h)
        got = ic[("ic", h)].dropna()
        assert list(got.index) == list(exp_ic.index)
        np.testing.assert_allclose(got.to_numpy(), exp_ic.to_numpy(), atol=1e-12)
        np.testing.assert_allclose(ic[("rank_ic", h)].dropna().to_numpy(), exp_ric.to_numpy(), atol=1e-12)
    summary = ic_summary(ic)
    s = ic[("ic", "1D")].dropna()
    row = summary.loc[("ic", "1D")]
    assert row["mean"] == pytest.approx(s.mean())
    assert row["std"] == pytest.approx(np.std(s.to_numpy(), ddof=1))
    assert row["icir"] == pytest.approx(s.mean() / np.std(s.to_numpy(), ddof=1))
    assert row["t_stat"] == pytest.approx(stats.ttest_1samp(s, 0.0).statistic)
    assert row["n"] == len(s)
    # the planted one-session signal is found, and it is strongest at one session
    assert summary.loc[("rank_ic", "1D"), "t_stat"] > 5
    assert summary.loc[("ic", "1D"), "mean"] > summary.loc[("ic", "10D"), "mean"]


def test_sessions_with_too_few_instruments_are_left_out():
    panel, bars = planted(n_inst=6, missing=0.3)
    fwd = forward_returns(bars, (1,))
    ic = factor_ic(panel["s"], fwd, min_assets=5)
    joined = panel.join(fwd, how="inner").dropna()
    sizes = joined.groupby(level="datetime").size()
    assert set(ic[("ic", "1D")].dropna().index) == set(sizes[sizes >= 5].index)


def test_quantile_returns_and_long_short_match_a_direct_computation():
    panel, bars = planted()
    fwd = forward_returns(bars)[["1D", "5D"]]
    joined = panel.join(fwd, how="inner").dropna()
    joined["q"] = joined.groupby(level="datetime")["s"].transform(lambda x: pd.qcut(x, 5, labels=False) + 1)
    per_day = joined.groupby(["q", joined.index.get_level_values("datetime")])[["1D", "5D"]].mean()
    expected = per_day.groupby(level="q").mean()
    got = quantile_returns(panel["s"], fwd, q=5)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-12)
    assert list(got.index) == [1, 2, 3, 4, 5]
    assert got.loc[5, "1D"] > got.loc[1, "1D"]  # the planted signal sorts returns
    ls = long_short(panel["s"], fwd, q=5)
    exp_ls = per_day.xs(5, level="q") - per_day.xs(1, level="q")
    np.testing.assert_allclose(ls["1D"].to_numpy(), exp_ls["1D"].to_numpy(), atol=1e-12)
    assert ls["1D"].mean() > 0


def test_turnover_matches_a_direct_computation():
    panel, _ = planted(n_days=20)
    got = factor_turnover(panel["s"], q=5)
    q = panel.groupby(level="datetime")["s"].transform(lambda x: pd.qcut(x, 5, labels=False) + 1)
    tops = {d: set(g.index.get_level_values("instrument")) for d, g in q[q == 5].groupby(level="datetime")}
    days = sorted(tops)
    expected = [len(tops[b] - tops[a]) / len(tops[b]) for a, b in zip(days, days[1:])]
    np.testing.assert_allclose(got["top"].to_numpy(), expected)
    ranks = panel["s"].groupby(level="datetime").rank().unstack()
    ac = [ranks.loc[b].corr(ranks.loc[a]) for a, b in zip(days, days[1:])]
    np.testing.assert_allclose(got["rank_autocorr"].to_numpy(), ac)


def test_analyze_returns_every_figure_as_json():
    panel, bars = planted()
    extra = pd.DataFrame({"s": [1.0]}, index=pd.MultiIndex.from_tuples([(panel.index[0][0], "688001.SH")], names=panel.index.names))
    result = analyze(pd.concat([panel, extra]).sort_index(), "s", bars, horizons=(1, 5))
    text = json.dumps(result, allow_nan=False)  # no NaN, no numpy types, no timestamps
    back = json.loads(text)
    assert back["horizons"] == ["1D", "5D"]
    assert back["ic_summary"]["rank_ic"]["1D"]["mean"] > 0.1
    assert set(back["ic_decay"]["ic"]) == {"1", "2", "3", "4", "5"}
    assert back["ic_decay"]["ic"]["1"] > back["ic_decay"]["ic"]["5"]
    assert back["long_short"]["mean"]["1D"] > 0
    assert set(back["turnover"]["mean"]) == {"top", "bottom", "rank_autocorr"}
    assert back["coverage"]["instruments"] == 24
    assert back["coverage"]["instruments_without_prices"] == 1  # counted, not silently lost
    with pytest.raises(GptquantError, match="no column 'nope'"):
        analyze(panel, "nope", bars)
