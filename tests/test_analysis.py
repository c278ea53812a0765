"""Factor analysis: forward-return timing, IC / Rank IC / quantiles / turnover against direct computations."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import planted
from gptquant.analysis.factor import (_factor_data, analyze, factor_ic, factor_turnover, forward_returns, ic_summary,
                                      long_short, quantile_returns)
from gptquant.errors import GptquantError
from gptquant.market.calendar import sessions


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
    only_b = forward_returns(bars, horizons=(1, 2), instruments=["B.SZ"])  # A's bars still give the dates
    assert list(only_b.index.unique("instrument")) == ["B.SZ"]
    pd.testing.assert_frame_equal(only_b.xs("B.SZ", level="instrument"), b)
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


def test_rank_ic_with_tied_values_matches_scipy():
    panel, bars = planted()
    panel = panel.assign(s=panel["s"].round(1))  # ties in the factor, and in the returns of rounded prices
    fwd = forward_returns(bars.assign(open=bars["open"].round(0)), (1,))
    assert panel["s"].duplicated().mean() > 0.5 and fwd["1D"].duplicated().mean() > 0.5
    ic = factor_ic(panel["s"], fwd)
    _, exp_ric = direct_ic(panel, fwd, "1D")
    np.testing.assert_allclose(ic[("rank_ic", "1D")].dropna().to_numpy(), exp_ric.dropna().to_numpy(), atol=1e-12)


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


def test_quantiles_and_turnover_are_alphalens_numbers():
    al = pytest.importorskip("alphalens")
    panel, bars = planted(n_days=40, n_inst=12)
    days = panel.index.get_level_values("datetime")
    coarse = days.isin(days.unique()[::3])  # every third session on a coarse grid: ties, some repeated bin edges
    s = panel["s"].round(1).where(~coarse, panel["s"].round(0))
    fwd = forward_returns(bars)[["1D", "5D"]]
    data = _factor_data(s, fwd, min_assets=5)
    expected = al.utils.quantize_factor(data, quantiles=5, no_raise=True)
    got = _factor_data(s, fwd, quantiles=5, min_assets=5)["factor_quantile"]
    assert 0 < got.index.unique("date").size < data.index.unique("date").size  # sessions with repeated edges go
    pd.testing.assert_series_equal(got, expected.astype("int64").reindex(got.index), check_names=False)
    assert len(got) == len(expected)
    for by_date in (False, True):
        mean, _ = al.performance.mean_return_by_quantile(data.assign(factor_quantile=expected), by_date=by_date, demeaned=False)
        np.testing.assert_allclose(quantile_returns(s, fwd, q=5, by_date=by_date).to_numpy(), mean.to_numpy(), rtol=0, atol=1e-12)
    stub = _factor_data(s, pd.DataFrame({"1D": 0.0}, index=s.index), min_assets=5)
    stub = stub.assign(factor_quantile=al.utils.quantize_factor(stub, quantiles=5, no_raise=True)).dropna()
    turnover = factor_turnover(s, q=5)
    for col, exp in (("top", al.performance.quantile_turnover(stub["factor_quantile"], 5)),
                     ("bottom", al.performance.quantile_turnover(stub["factor_quantile"], 1)),
                     ("rank_autocorr", al.performance.factor_rank_autocorrelation(stub))):
        exp = exp.reindex(turnover.index)
        assert exp.notna().sum() > 10
        np.testing.assert_allclose(turnover[col].to_numpy(), exp.to_numpy(), rtol=0, atol=1e-12)


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
