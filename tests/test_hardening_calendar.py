"""Issue 15, the calendar's horizon: exchange_calendars' XSHG table ends (2026-12-31 in the installed
version); news and prices after it must not be rejected, and holidays it does not know can be added."""
from __future__ import annotations

import warnings

import pandas as pd

from gptquant.features.panel import build_panel
from gptquant.market import calendar as cal
from gptquant.runtime.news import read_news


def _news_2027(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("datetime,text,instrument\n"
                    "2026-12-30 20:00,年末公告,600519\n"     # -> 2026-12-31, the table's last session
                    "2027-01-04 08:00,新年第一条,600519\n"    # a Monday past the horizon
                    "2027-02-12 10:00,春节前,600519\n"        # Friday 10:00 -> the next weekday
                    "2027-02-13 10:00,周六,000001\n", encoding="utf-8")
    news, rej = read_news(path)
    assert rej.empty
    feats = pd.DataFrame({"article_id": news["article_id"], "sentiment": [0.1, 0.2, 0.3, 0.4]})
    return feats, news


def test_news_dated_2027_reaches_the_panel_with_one_warning(tmp_path):
    feats, news = _news_2027(tmp_path)
    cal._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panel, rejects = build_panel(feats, news, return_rejects=True, aggregates=("sum",))
        build_panel(feats, news, aggregates=("sum",))
    assert rejects.empty  # before: three rows "after the XSHG calendar's last session"
    got = panel["sentiment_sum"].xs("600519.SH", level="instrument")
    assert got.to_dict() == {pd.Timestamp("2026-12-31"): 0.1, pd.Timestamp("2027-01-04"): 0.2,
                             pd.Timestamp("2027-02-15"): 0.3}
    assert panel["sentiment_sum"].xs("000001.SZ", level="instrument").index.tolist() == [pd.Timestamp("2027-02-15")]
    horizon = [w for w in caught if "2026-12-31" in str(w.message) and "extra_holidays" in str(w.message)]
    assert len(horizon) == 1, [str(w.message) for w in caught]


def test_extra_holidays_move_news_to_the_next_open_day(tmp_path):
    feats, news = _news_2027(tmp_path)
    spring = pd.bdate_range("2027-02-15", "2027-02-19")
    panel = build_panel(feats, news, aggregates=("sum",), extra_holidays=list(spring))
    assert pd.Timestamp("2027-02-22") in panel.index.get_level_values("datetime")
    assert not panel.index.get_level_values("datetime").isin(spring).any()
    assert cal.next_session("2027-02-12", extra_holidays=spring) == pd.Timestamp("2027-02-22")
    # inside the known table too: a day the exchange closes at short notice
    assert cal.next_session("2024-01-02", extra_holidays=["2024-01-03"]) == pd.Timestamp("2024-01-04")


def test_sessions_past_the_horizon_are_weekdays():
    days = cal.sessions("2027-01-01", "2027-01-10")
    assert [d.day for d in days] == [1, 4, 5, 6, 7, 8]
    assert cal.horizon() <= pd.Timestamp("2026-12-31")


def test_extra_holidays_is_a_nightly_config_key(tmp_path):
    from gptquant.jobs.nightly import load_config

    path = tmp_path / "n.toml"
    path.write_text('[news]\nsources = ["n.csv"]\n[prices]\nbars = "p.csv"\n[model]\nbundle = "b"\n'
                    '[panel]\nextra_holidays = [2027-02-15, "2027-02-16"]\n', encoding="utf-8")
    config = load_config(path)  # before: "unknown config key(s): panel.extra_holidays"
    days = cal._holidays(config["panel"]["extra_holidays"])
    assert days == (pd.Timestamp("2027-02-15"), pd.Timestamp("2027-02-16"))
