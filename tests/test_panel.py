"""The daily panel: point-in-time alignment (no look-ahead), aggregates, decay, rejects."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gptquant.errors import GptquantError
from gptquant.features.panel import align_articles, build_panel, to_qlib
from gptquant.market.calendar import sessions

A, B = "600519.SH", "000001.SZ"


def tables(rows):
    """rows: (datetime, codes, sentiment[, ai_score]) -> (features, news) with article_id 1..n."""
    ids = list(range(1, len(rows) + 1))
    news = pd.DataFrame({"article_id": ids, "datetime": pd.to_datetime([r[0] for r in rows]),
                         "instruments": [list(r[1]) for r in rows]})
    feats = pd.DataFrame({"article_id": ids, "sentiment": [float(r[2]) for r in rows]})
    if rows and len(rows[0]) > 3:
        feats["ai_score"] = [float(r[3]) for r in rows]
    return feats, news


def session_of(when, cutoff="09:30"):
    f, n = tables([(when, [A], 1.0)])
    rows, rejects = align_articles(f, n, cutoff=cutoff)
    assert rejects.empty
    return rows["session"].iloc[0]


def T(s):
    return pd.Timestamp(s)


# ---- session alignment --------------------------------------------------------------------------

def test_cutoff_0930_splits_the_morning():
    # Tuesday 2024-01-02 and Wednesday 2024-01-03 are sessions
    assert session_of("2024-01-02 09:29") == T("2024-01-02")
    assert session_of("2024-01-02 09:30") == T("2024-01-03")  # at the cutoff is not before it
    assert session_of("2024-01-02 09:31") == T("2024-01-03")
    assert session_of("2024-01-01 20:00") == T("2024-01-02")  # New Year holiday evening


def test_weekend_and_holiday_news_rolls_to_next_session():
    assert session_of("2024-01-06 12:00") == T("2024-01-08")  # Saturday -> Monday
    assert session_of("2024-01-05 15:30") == T("2024-01-08")  # Friday after the close -> Monday
    assert session_of("2024-10-03 10:00") == T("2024-10-08")  # National Day week
    assert session_of("2024-09-30 10:00") == T("2024-10-08")  # after the cutoff of the last session before it


def test_cutoff_1500_variant():
    assert session_of("2024-01-02 14:59", "15:00") == T("2024-01-02")
    assert session_of("2024-01-02 15:01", "15:00") == T("2024-01-03")
    assert session_of("2024-01-02 08:00", "15:00") == T("2024-01-02")
    assert session_of("2024-01-02 09:31", "15:00") == T("2024-01-02")


def test_timezone_aware_times_are_converted_to_shanghai():
    f, n = tables([("2024-01-02 09:31", [A], 1.0)])
    n["datetime"] = pd.to_datetime(["2024-01-02 01:29"]).tz_localize("UTC")  # 09:29 in Shanghai
    rows, _ = align_articles(f, n)
    assert rows["session"].iloc[0] == T("2024-01-02")


# ---- no look-ahead ------------------------------------------------------------------------------

def random_news(n=160, seed=7):
    rng = np.random.default_rng(seed)
    start = T("2024-03-01")
    times = start + pd.to_timedelta(rng.integers(0, 60 * 24 * 45, n), unit="min")
    codes = [A, B, "300750.SZ", "601318.SH"]
    rows = [(t, list(rng.choice(codes, rng.integers(1, 3), replace=False)), rng.normal()) for t in times]
    return tables(rows)


def test_rows_only_see_news_published_before_their_cutoff():
    feats, news = random_news()
    full = build_panel(feats, news)
    for day in sessions("2024-03-05", "2024-04-10")[::4]:
        before = news["datetime"] < day + pd.Timedelta("09:30:00")
        part = build_panel(feats, news[before], end=day)
        expect = full[full.index.get_level_values("datetime") <= day]
        pd.testing.assert_frame_equal(part, expect, check_like=False)


@pytest.mark.parametrize("cutoff", ["09:30", "15:00"])
def test_moving_an_article_later_changes_no_row_before_its_new_session(cutoff):
    feats, news = random_news()
    rng = np.random.default_rng(1)
    for i in rng.choice(len(news), 8, replace=False):
        moved = news.copy()
        new_time = news["datetime"].iloc[i] + pd.Timedelta(days=int(rng.integers(1, 9)), minutes=int(rng.integers(0, 600)))
        moved.loc[moved.index[i], "datetime"] = new_time
        new_session = align_articles(feats, moved.iloc[[i]], cutoff=cutoff)[0]["session"].iloc[0]
        # a fixed end: without one the panel (and the carried rows) ends at the latest article's session
        with_moved = build_panel(feats, moved, cutoff=cutoff, end="2024-06-28")
        without = build_panel(feats, news.drop(news.index[i]), cutoff=cutoff, end="2024-06-28")
        original = build_panel(feats, news, cutoff=cutoff, end="2024-06-28")
        old_session = align_articles(feats, news.iloc[[i]], cutoff=cutoff)[0]["session"].iloc[0]
        earlier = lambda p, d: p[p.index.get_level_values("datetime") < d]  # noqa: E731
        # before its new session the moved article is invisible: the panel equals the one without it
        pd.testing.assert_frame_equal(earlier(with_moved, new_session), earlier(without, new_session))
        # and nothing before its old session changed at all
        pd.testing.assert_frame_equal(earlier(with_moved, old_session), earlier(original, old_session))
        assert new_session >= old_session


# ---- aggregates ---------------------------------------------------------------------------------

def test_aggregates_by_hand():
    feats, news = tables([
        ("2024-01-02 08:00", [A], 0.5),
        ("2024-01-02 09:00", [A, B], -0.8),  # one article, two instruments
        ("2024-01-02 09:31", [A], 0.2),  # next session
        ("2024-01-06 12:00", [B], 1.0),  # Saturday -> Monday 2024-01-08
    ])
    p = build_panel(feats, news, halflife=3)
    assert p.index.names == ["datetime", "instrument"]
    assert p.index.is_monotonic_increasing
    assert list(p.columns) == [f"sentiment_{a}" for a in ("mean", "sum", "count", "maxabs", "ewm")]
    assert p["sentiment_count"].dtype == "int64"
    r = p.loc[(T("2024-01-02"), A)]
    assert r["sentiment_mean"] == pytest.approx(-0.15)
    assert r["sentiment_sum"] == pytest.approx(-0.3)
    assert r["sentiment_count"] == 2
    assert r["sentiment_maxabs"] == pytest.approx(-0.8)  # signed value of the largest magnitude
    assert r["sentiment_ewm"] == pytest.approx(-0.3)
    lam = 0.5 ** (1 / 3)
    r = p.loc[(T("2024-01-03"), A)]
    assert (r["sentiment_mean"], r["sentiment_count"]) == (pytest.approx(0.2), 1)
    assert r["sentiment_ewm"] == pytest.approx(-0.3 * lam + 0.2)
    # a session without news: only the carried value; the other aggregates are NaN, count 0
    r = p.loc[(T("2024-01-04"), B)]
    assert r["sentiment_count"] == 0
    assert np.isnan(r["sentiment_mean"]) and np.isnan(r["sentiment_sum"]) and np.isnan(r["sentiment_maxabs"])
    assert r["sentiment_ewm"] == pytest.approx(-0.8 * lam**2)
    r = p.loc[(T("2024-01-08"), B)]
    assert r["sentiment_ewm"] == pytest.approx(-0.8 * lam**4 + 1.0)
    assert p.loc[(T("2024-01-08"), A), "sentiment_count"] == 0


def test_ewm_halves_every_halflife_and_stops_after_carry():
    feats, news = tables([("2024-01-02 08:00", [A], 2.0), ("2024-03-01 08:00", [B], 1.0)])
    p = build_panel(feats, news, halflife=2, carry=6)
    a = p.xs(A, level="instrument")["sentiment_ewm"]
    grid = sessions("2024-01-02", "2024-03-01")
    assert list(a.index) == list(grid[:7])  # the news session and 6 carried sessions
    assert a.to_numpy() == pytest.approx(2.0 * 0.5 ** (np.arange(7) / 2))
    default = build_panel(feats, news, halflife=2)
    assert len(default.xs(A, level="instrument")) == 1 + 20  # ten half-lives by default


def test_articles_before_start_feed_the_carried_value():
    feats, news = tables([("2024-01-02 08:00", [A], 1.0), ("2024-01-05 08:00", [A], 1.0)])
    p = build_panel(feats, news, halflife=1, start="2024-01-04")
    assert p.index.get_level_values("datetime").min() == T("2024-01-04")
    assert p.loc[(T("2024-01-04"), A), "sentiment_ewm"] == pytest.approx(0.25)
    assert p.loc[(T("2024-01-05"), A), "sentiment_ewm"] == pytest.approx(1.125)


def test_ai_score_drop_and_downweight():
    feats, news = tables([("2024-01-02 08:00", [A], 1.0, 0.0), ("2024-01-02 08:05", [A], -1.0, 0.75)])
    p, rejects = build_panel(feats, news, columns=["sentiment"], ai_score_max=0.5, return_rejects=True)
    assert p.loc[(T("2024-01-02"), A), "sentiment_count"] == 1
    assert p.loc[(T("2024-01-02"), A), "sentiment_mean"] == pytest.approx(1.0)
    assert list(rejects["article_id"]) == [2] and "ai_score" in rejects["reason"].iloc[0]
    p = build_panel(feats, news, columns=["sentiment"], ai_weight=1.0)  # weights 1 and 0.25
    r = p.loc[(T("2024-01-02"), A)]
    assert r["sentiment_mean"] == pytest.approx((1.0 - 0.25) / 1.25)
    assert r["sentiment_sum"] == pytest.approx(0.75)
    assert r["sentiment_count"] == 2


# ---- rejects and errors -------------------------------------------------------------------------

def test_every_article_is_used_or_rejected_with_a_reason():
    feats, news = tables([
        ("2024-01-02 08:00", [A], 1.0),
        ("2099-01-02 08:00", [A], 1.0),  # beyond the calendar and its weekday extension
        ("2024-01-02 08:00", [], 1.0),  # no codes
        ("2024-01-02 08:00", [B], 1.0),  # features missing (dropped below)
    ])
    news["datetime"] = news["datetime"].astype(object)
    news.loc[4] = [5, "not a time", [A]]
    feats.loc[4] = [5, 0.0]
    feats = feats[feats["article_id"] != 4]
    p, rejects = build_panel(feats, news, return_rejects=True)
    reasons = dict(zip(rejects["article_id"], rejects["reason"]))
    assert set(reasons) == {2, 3, 4, 5}
    assert "last session" in reasons[2] and "instrument" in reasons[3]
    assert "no features" in reasons[4] and "datetime" in reasons[5]
    assert list(rejects["row"]) == [2, 3, 4, 5]
    info = p.attrs["gptquant_panel"]
    assert info["articles_in"] == info["articles_used"] + info["articles_rejected"] == 5


def test_bad_tables_name_the_problem():
    feats, news = tables([("2024-01-02 08:00", [A], 1.0)])
    with pytest.raises(GptquantError, match="instruments"):
        build_panel(feats, news.drop(columns="instruments"))
    with pytest.raises(GptquantError, match="appears more than once"):
        build_panel(pd.concat([feats, feats]), news)
    with pytest.raises(GptquantError, match="nope"):
        build_panel(feats, news, columns=["nope"])
    with pytest.raises(GptquantError, match="ai_score"):
        build_panel(feats, news, ai_score_max=0.5)
    with pytest.raises(GptquantError, match="aggregate"):
        build_panel(feats, news, aggregates=("median",))


def test_qlib_frame_has_score_on_datetime_instrument():
    feats, news = tables([("2024-01-02 08:00", [A], 1.0), ("2024-01-02 08:00", [B], -1.0)])
    q = to_qlib(build_panel(feats, news))
    assert list(q.columns) == ["score"]
    assert q.index.names == ["datetime", "instrument"]
    assert q.loc[(T("2024-01-02"), "SH600519"), "score"] == 1.0
    assert q.loc[(T("2024-01-02"), "SZ000001"), "score"] == -1.0


def test_nothing_usable_gives_an_empty_panel_with_the_columns():
    feats, news = tables([("2099-01-02 08:00", [A], 1.0)])
    p, rejects = build_panel(feats, news, return_rejects=True)
    assert p.empty and p.index.names == ["datetime", "instrument"]
    assert list(p.columns) == [f"sentiment_{a}" for a in ("mean", "sum", "count", "maxabs", "ewm")]
    assert len(rejects) == 1
