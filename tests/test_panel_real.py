"""The panel on the shared Astock news (research-only data, read in place): session alignment, nothing lost."""
from __future__ import annotations

import numpy as np
import pandas as pd

from gptquant.features.panel import build_panel
from gptquant.market.calendar import sessions
from gptquant.runtime.news import read_news


def test_astock_news_panel_aligns_to_xshg_and_loses_no_article(shared_data):
    raw = pd.read_csv(shared_data / "astock_news" / "astock_news.csv", dtype=str, keep_default_na=False,
                      usecols=["datetime", "code", "exchange", "text", "second_day"])
    news, read_rejects = read_news(raw)
    # a feature made from the table itself (the scorer is not needed for alignment)
    feats = pd.DataFrame({"article_id": news["article_id"], "length": news["text"].str.len().astype(float)})
    panel, rejects = build_panel(feats, news, return_rejects=True)

    assert len(raw) == len(news) + len(read_rejects)
    info = panel.attrs["gptquant_panel"]
    assert info["articles_in"] == info["articles_used"] + info["articles_rejected"] == len(news)
    assert len(rejects) == info["articles_rejected"]
    # every used article counts once for each instrument it names
    used = ~news["article_id"].isin(rejects["article_id"])
    assert panel["length_count"].sum() == sum(len(c) for c in news.loc[used, "instruments"])

    days = panel.index.get_level_values("datetime")
    assert days.isin(sessions(days.min(), days.max())).all()
    assert panel.index.is_monotonic_increasing and not panel.index.duplicated().any()
    # the source's own "first tradable day" agrees with our 09:30 alignment for news outside trading hours
    t = pd.to_datetime(raw["datetime"])
    outside = (t.dt.hour >= 15) | (t.dt.time < pd.Timestamp("09:25").time())
    rows = pd.DataFrame({"session": panel.reset_index().groupby("instrument")["datetime"].min()})
    first_news = news.assign(code=[c[0] for c in news["instruments"]], second_day=pd.to_datetime(raw["second_day"]))
    first_news = first_news[outside.to_numpy()].sort_values("datetime").drop_duplicates("code")
    got = rows["session"].reindex(first_news["code"]).to_numpy()
    agree = np.mean(got == first_news["second_day"].to_numpy())
    print(f"astock: {len(raw)} rows, {len(rejects)} rejected, first-session agreement {agree:.3f}")
    assert agree > 0.95, agree
