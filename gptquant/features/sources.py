"""The news a job reads: several source files as one articles table, and the news window.

Every row ends up in the articles or in the rejects table with its reason (gptquant.runtime.news decides
per row); articles outside the window are rejects too, never silently dropped.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import GptquantError


def read_sources(paths: list[Path]):
    """All news sources as one articles table (ids prefixed by the file stem when there are several) + rejects."""
    from ..runtime.news import read_news

    arts, rejs = [], []
    for p in paths:
        if not p.is_file():
            raise GptquantError(f"news source {p}: file not found")
        a, r = read_news(p)
        if len(paths) > 1:
            a["article_id"] = [f"{p.stem}:{x}" for x in a["article_id"]]
            r["article_id"] = [f"{p.stem}:{x}" for x in r["article_id"]]
        arts.append(a.assign(source_file=str(p)))
        rejs.append(r.assign(source_file=str(p)))
    articles = pd.concat(arts, ignore_index=True) if len(arts) > 1 else arts[0]
    rejects = pd.concat(rejs, ignore_index=True) if len(rejs) > 1 else rejs[0]
    if len(paths) > 1:  # rows of different files must stay distinguishable for the panel's rejects
        articles["row"] = range(1, len(articles) + 1)
    return articles, rejects


def news_window(news, rejects, start, end):
    """Keep articles published in [start, end] (dates include the whole day); the others become rejects."""
    if start is None and end is None:
        return news, rejects
    t = news["datetime"]
    lo = pd.Timestamp(start) if start is not None else t.min()
    hi = pd.Timestamp(end) + pd.Timedelta(days=1) if end is not None and len(str(end)) <= 10 else (pd.Timestamp(end) if end is not None else None)
    out = (t < lo) | ((t >= hi) if hi is not None else False)
    if out.any():
        extra = pd.DataFrame({"row": news.loc[out, "row"].to_numpy(), "article_id": news.loc[out, "article_id"].to_numpy(),
                              "reason": f"outside the news window [{start}, {end}]"})
        if "source_file" in news.columns:
            extra["source_file"] = news.loc[out, "source_file"].to_numpy()
        rejects = pd.concat([rejects, extra], ignore_index=True)
    return news[~out].reset_index(drop=True), rejects
