"""Market-feedback labels: let the market judge the news, for users without human labels.

For each (article, instrument) the entry session is the first session the news can be traded in
(align_to_sessions with the cutoff, default 09:30: news before the open trades that day, news during
or after the session trades the next); if the stock is suspended then, the first later session with a
bar. The label comes from the excess return over the benchmark from that session's open to the close
`horizon` sessions later, cut by thresholds into negative / neutral / positive. Every news row ends
up labelled or in the rejects table with its reason.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GptquantError

LABELS = ("negative", "neutral", "positive")
LABEL_COLUMNS = ["article_id", "row", "datetime", "instrument", "session", "exit_session", "stock_return",
                 "benchmark_return", "excess_return", "label", "text"]


def _benchmark_bars(source, code: str) -> pd.DataFrame:
    """Benchmark open/close by date (an index file read with the bar loader; filtered to the code's digits)."""
    from ..market.prices import load_bars

    bars = load_bars(source)
    digits = code.split(".")[0][:6]
    bars = bars[bars["instrument"].str[:6] == digits]
    if bars.empty:
        raise GptquantError(f"{source}: no rows for benchmark {code}")
    return bars.set_index("datetime")[["open", "close"]]


def market_labels(news, bars, benchmark, *, benchmark_code: str = "000300.SH", horizon: int = 1,
                  down: float = -0.01, up: float = 0.01, cutoff: str = "09:30") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labels, rejects). `news`: a news table (path or DataFrame with datetime, text, instrument/codes);
    `bars`: daily bars (path or DataFrame, load_bars format); `benchmark`: index bars with open and close.
    excess = (close[exit] / open[entry] − 1) − same for the benchmark, exit = entry + horizon − 1 sessions."""
    from ..market.calendar import align_to_sessions
    from ..market.prices import load_bars
    from ..runtime.news import read_news

    if horizon < 1:
        raise GptquantError(f"horizon must be >= 1 session, got {horizon}")
    if not down <= up:
        raise GptquantError(f"thresholds must satisfy down <= up, got down={down} up={up}")
    articles, rejects = read_news(news)
    rejects = rejects.copy()
    bars = bars if isinstance(bars, pd.DataFrame) and "instrument" in bars.columns and \
        pd.api.types.is_datetime64_any_dtype(bars["datetime"]) else load_bars(bars)
    bench = _benchmark_bars(benchmark, benchmark_code)
    art = articles.explode("instruments").rename(columns={"instruments": "instrument"})
    art["session"] = align_to_sessions(art["datetime"], cutoff)
    by_inst = {k: g.reset_index(drop=True) for k, g in bars.groupby("instrument", sort=False)}
    bdates = bench.index.values
    rows, bad = [], []
    for a in art.itertuples(index=False):
        g = by_inst.get(a.instrument)
        reason = None
        if pd.isna(a.session):
            reason = "published after the calendar's last session"
        elif g is None:
            reason = f"no bars for {a.instrument}"
        else:
            i = int(np.searchsorted(g["datetime"].values, np.datetime64(a.session), side="left"))
            j = i + horizon - 1
            if j >= len(g):
                reason = f"no bars for {a.instrument} {horizon} session(s) from {a.session.date()} yet"
            else:
                entry, exit_ = g["datetime"].iloc[i], g["datetime"].iloc[j]
                bi, bj = np.searchsorted(bdates, entry.to_datetime64()), np.searchsorted(bdates, exit_.to_datetime64())
                if bi >= len(bdates) or bdates[bi] != entry.to_datetime64() or bj >= len(bdates) or \
                        bdates[bj] != exit_.to_datetime64():
                    reason = f"benchmark {benchmark_code} has no bar on {entry.date()} or {exit_.date()}"
                else:
                    r = g["close"].iloc[j] / g["open"].iloc[i] - 1.0
                    rb = bench["close"].iloc[bj] / bench["open"].iloc[bi] - 1.0
                    ex = r - rb
                    label = LABELS[0] if ex < down else LABELS[2] if ex > up else LABELS[1]
                    rows.append((a.article_id, a.row, a.datetime, a.instrument, entry, exit_, r, rb, ex, label, a.text))
        if reason:
            bad.append((a.row, a.article_id, reason))
    labels = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    if bad:
        rejects = pd.concat([rejects, pd.DataFrame(bad, columns=rejects.columns)], ignore_index=True)
    return labels, rejects
