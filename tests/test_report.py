"""The nightly HTML report: escaping, figures, monthly returns, and graceful gaps (no sentiment, no font, failed backtest)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gptquant.analysis import report as R


class FakeResult:
    def __init__(self, daily):
        self.daily = daily


def daily_frame(n=70, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2023-01-02", periods=n)
    return pd.DataFrame({"returns": rng.normal(0.001, 0.01, n), "benchmark_returns": rng.normal(0, 0.01, n)}, index=idx)


def articles(texts, values, session="2023-04-07"):
    n = len(texts)
    return pd.DataFrame({"article_id": [f"a{i}" for i in range(n)], "session": pd.to_datetime([session] * n),
                         "instruments": ["600000.SH"] * n, "text": texts, "value": values})


def test_report_escapes_every_headline_and_error_and_writes_its_figures(tmp_path):
    evil = "<script>alert('x')</script>公司公告"
    arts = pd.concat([articles(["甲公司中标大单", evil, "乙公司被立案调查 & 罚款"], [0.9, -0.8, -0.5]),
                      articles(["上周的新闻"], [0.1], session="2023-03-01")], ignore_index=True)
    backtests = [{"name": "good", "status": "ok", "summary": {"sharpe": 1.2}, "error": None, "result": FakeResult(daily_frame())},
                 {"name": "bad<b>", "status": "failed", "summary": None, "error": "ValueError: <img src=x onerror=1>", "result": None}]
    comparison = [{"metric": "good.sharpe", "previous": 0.2, "current": 1.2, "change": 1.0, "threshold": 0.3, "flagged": True}]
    path = R.write_report(tmp_path, title="夜间 <run>", info={"run_id": "r1", "news": "<i>x</i>"}, analysis=None,
                          backtests=backtests, articles=arts, feature="sentiment", comparison=comparison, notes=["note <u>"])
    text = path.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;公司公告" in text
    for raw in ("<img src=x", "<run>", "<i>x</i>", "<u>", "bad<b>"):
        assert raw not in text
    assert "&lt;img src=x onerror=1&gt;" in text and "乙公司被立案调查 &amp; 罚款" in text
    assert "1 of 1 metric(s) changed beyond their threshold" in text and "FLAG" in text
    figs = json.loads((tmp_path / "figures.json").read_text(encoding="utf-8"))
    hl = figs["headlines"]
    assert hl["session"] == "2023-04-07"  # the latest session only
    assert [h["article_id"] for h in hl["top"]] == ["a0", "a2"] and [h["article_id"] for h in hl["bottom"]] == ["a1"]
    assert (tmp_path / "figures" / "equity.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "drawdown.png").is_file() and not (tmp_path / "figures" / "ic_session.png").exists()
    assert text.count("data:image/png;base64,") == 3  # equity, drawdown, distribution (no analysis given)


def test_monthly_returns_and_equity_match_a_direct_computation():
    daily = daily_frame(90, seed=4)
    table = R.monthly_returns(daily["returns"])
    jan = daily["returns"][daily.index.month == 1]
    assert table.loc[2023, 1] == pytest.approx(np.prod(1 + jan.to_numpy()) - 1)
    assert table.loc[2023, "year"] == pytest.approx(np.prod(1 + daily["returns"].to_numpy()) - 1)
    assert np.isnan(table.loc[2023, 12])
    curves = R.equity_curves(daily)
    assert curves["strategy"].iloc[-1] == pytest.approx(np.prod(1 + daily["returns"].to_numpy()))
    dd = curves["drawdown"]
    assert dd.max() <= 0 and dd.min() == pytest.approx((curves["strategy"] / curves["strategy"].cummax().clip(lower=1) - 1).min())


def test_report_without_sentiment_or_cjk_font_says_so_and_still_renders(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "CJK_FONTS", ("No Such Font 123",))
    arts = articles(["中文标题一", "中文标题二"], [5.1, 6.2])
    analysis = {"column": "nll_mean_ewm", "price": "open", "horizons": ["1D"], "quantiles": 5,
                "coverage": {"rows_used": 10, "panel_rows": 12, "sessions": 2, "instruments": 5, "first": "2023-04-06", "last": "2023-04-07"},
                "ic_summary": {k: {"1D": {"mean": 0.1, "std": 0.2, "icir": 0.5, "t_stat": 0.7, "n": 2}} for k in ("ic", "rank_ic")},
                "ic": {k: {"1D": {"2023-04-06": 0.1, "2023-04-07": 0.2}} for k in ("ic", "rank_ic")},
                "quantile_returns": {"1D": {"1": -0.01, "5": 0.02}}, "long_short": {"mean": {"1D": 0.03}},
                "turnover": {"mean": {"top": 0.5}}, "ic_decay": {"ic": {"1": 0.1}, "rank_ic": {"1": 0.2}}}
    path = R.write_report(tmp_path, title="t", info={}, analysis=analysis, backtests=[], articles=arts, feature="nll_mean",
                          comparison=[], notes=["the bundle has no sentiment head"])
    text = path.read_text(encoding="utf-8")
    assert "no sentiment head" in text and "no CJK font installed" in text
    assert "no backtests configured" in text and "no previous run" in text
    assert (tmp_path / "figures" / "ic_session.png").is_file() and (tmp_path / "figures" / "quantiles.png").is_file()
    assert "中文标题二" in text  # HTML keeps the Chinese text (the browser's fonts render it)


def test_hostile_names_columns_and_notes_are_escaped_by_the_templates_not_by_hand(tmp_path, monkeypatch):
    """With html.escape disabled, both reports still escape a hostile backtest name, summary column, note,
    order reason and trades column: the escaping is Jinja2's autoescape, not a call each writer must remember."""
    import html

    from gptquant.backtest.result import BacktestResult

    monkeypatch.setattr(html, "escape", lambda s, quote=True: s)
    evil = "<script>alert(1)</script>"
    backtests = [{"name": f"bt{evil}", "status": "ok", "summary": {f"col{evil}": 1.0}, "error": None,
                  "result": FakeResult(daily_frame())}]
    text = R.write_report(tmp_path / "run", title="t", info={"timings_s": {f"stage{evil}": 1.5}}, analysis=None,
                          backtests=backtests, articles=articles(["a"], [0.1]), feature="sentiment", comparison=[],
                          notes=[f"note{evil}"]).read_text(encoding="utf-8")
    for where in ("bt", "col", "note", "stage"):
        assert f"{where}&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text and "<th>stage</th><th>seconds</th>" in text  # timings are a table, not a JSON dict

    daily = daily_frame(30).assign(turnover=0.1, portfolio_value=lambda d: 1e6 * (1 + d["returns"]).cumprod())
    orders = pd.DataFrame({"status": ["filled", f"refused{evil}"], "reason": ["", f"limit up{evil}: no fill"]})
    trades = pd.DataFrame({"instrument": ["600000.SH"], "pnl_net": [5.0], f"why{evil}": [f"cell{evil}"]})
    res = BacktestResult(daily, orders, trades, capital_base=1e6, benchmark=f"bench{evil}", title=f"title{evil}")
    text = res.to_html(tmp_path / "bt.html").read_text(encoding="utf-8")
    for where in ("title", "bench", "refused", "limit up", "why", "cell"):
        assert f"{where}&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text
