"""The demo world's generator (gptquant.demo_world) scaled to a market: N instruments x S sessions of bars and
any number of news rows, vectorised so a million rows take seconds. Seeded and deterministic.

Texts: a pool of demo articles (per sentiment label) with the company named and a serial number appended,
so every row's text is distinct (the score cache sees a million different keys). Features: `sentiment`
(the planted label plus noise) and `nll`, as a scorer would give. Bars: a random walk whose next-session
returns carry the news sentiment, so the factor analysis finds a signal.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

POOL = 3000  # demo articles per label, written once


def market_codes(n: int) -> np.ndarray:
    """n distinct A-share codes across the SH main board, SZ main board and ChiNext."""
    boards = [(600000, ".SH"), (1, ".SZ"), (300001, ".SZ"), (601000, ".SH"), (2001, ".SZ"), (603000, ".SH")]
    per = -(-n // len(boards))
    codes = [f"{base + k:06d}{ex}" for k in range(per) for base, ex in boards]
    return np.asarray(codes[:n])


def news_table(n_rows: int, codes: np.ndarray, days: pd.DatetimeIndex, seed: int = 7) -> pd.DataFrame:
    """id, datetime (text, as files carry it), instrument, text, label (0/1/2) for n_rows articles."""
    from gptquant.demo_world import LABELS, write_article

    rng = np.random.default_rng(seed)
    pools = [[write_article("\x00", lab, rng) for _ in range(POOL)] for lab in range(len(LABELS))]
    label = rng.choice(3, size=n_rows, p=[0.35, 0.3, 0.35])
    inst = rng.integers(0, len(codes), n_rows)
    pick = rng.integers(0, POOL, n_rows)
    day = np.sort(rng.integers(0, len(days), n_rows))
    # from the previous evening to the afternoon, as the demo world writes them
    when = days.values[day] - np.timedelta64(6, "h") + rng.integers(0, 21 * 3600, n_rows).astype("timedelta64[s]")
    names = pd.Series(codes).str[:6].radd("公司").to_numpy()
    texts = [pools[lab][p].replace("\x00", names[i]) + f"（第{k}号）"
             for k, (lab, p, i) in enumerate(zip(label.tolist(), pick.tolist(), inst.tolist()))]
    return pd.DataFrame({"id": [f"n{k:07d}" for k in range(n_rows)],
                         "datetime": pd.DatetimeIndex(when).strftime("%Y-%m-%d %H:%M:%S"),
                         "instrument": codes[inst], "text": texts, "label": label})


def features_of(news: pd.DataFrame, seed: int = 8) -> pd.DataFrame:
    """What a sentiment scorer would give: sentiment = label - 1 plus noise, nll around 3."""
    rng = np.random.default_rng(seed)
    n = len(news)
    return pd.DataFrame({"sentiment": (news["label"].to_numpy() - 1) * 0.6 + rng.normal(0, 0.5, n),
                         "nll": rng.normal(3.0, 0.4, n)})


def bars_table(codes: np.ndarray, days: pd.DatetimeIndex, news: pd.DataFrame, signal: float = 0.004,
               seed: int = 9) -> pd.DataFrame:
    """load_bars layout (datetime, instrument, open, high, low, close, volume, pre_close), every bar present."""
    from gptquant.market.calendar import align_to_sessions

    rng = np.random.default_rng(seed)
    shape = (len(days), len(codes))
    impact = np.zeros(shape)
    sess = align_to_sessions(pd.to_datetime(news["datetime"]))
    t = days.get_indexer(pd.DatetimeIndex(sess))
    j = pd.Index(codes).get_indexer(news["instrument"])
    ok = t >= 0
    np.add.at(impact, (t[ok], j[ok]), signal * (news["label"].to_numpy()[ok] - 1))
    ret = np.clip(rng.normal(0.0003, 0.018, shape) + impact, -0.095, 0.095)
    close = rng.uniform(5, 50, len(codes)) * np.cumprod(1 + ret, axis=0)
    prev = np.vstack([close[:1] / (1 + ret[:1]), close[:-1]])
    opn = prev * (1 + np.clip(0.6 * impact + rng.normal(0, 0.004, shape), -0.09, 0.09))
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.01, shape))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.01, shape))
    return pd.DataFrame({
        "datetime": np.repeat(days.values, len(codes)), "instrument": np.tile(codes, len(days)),
        "open": opn.ravel().round(2), "high": high.ravel().round(2), "low": low.ravel().round(2),
        "close": close.ravel().round(2), "volume": rng.choice([2e6, 2e7], size=shape).ravel(),
        "pre_close": prev.ravel().round(2)}).sort_values(["instrument", "datetime"], kind="stable", ignore_index=True)


def write_world(out: Path, n_instruments: int, n_sessions: int, rows: list[int], seed: int = 7) -> dict:
    """For each size n: news-<n>.csv (spanning every session) and features-<n>.parquet (aligned with it by row);
    and bars.parquet (its planted signal from the largest news table). Returns their paths."""
    from gptquant.market.calendar import sessions

    out.mkdir(parents=True, exist_ok=True)
    days = sessions("2020-01-02", "2026-12-31")[:n_sessions]
    codes = market_codes(n_instruments)
    paths = {}
    for n in sorted(rows):
        news = news_table(n, codes, days, seed)
        paths[f"news-{n}"], paths[f"features-{n}"] = out / f"news-{n}.csv", out / f"features-{n}.parquet"
        news.drop(columns="label").to_csv(paths[f"news-{n}"], index=False)
        features_of(news).to_parquet(paths[f"features-{n}"])
    paths["bars"] = out / "bars.parquet"
    bars_table(codes, days, news).to_parquet(paths["bars"])
    return {k: str(v) for k, v in paths.items()}
