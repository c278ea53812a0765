"""A small synthetic A-share market laid out as a gptquant data root (bars/ per stock, index/ for CSI 300),
for the BigQuant compatibility tests. Deterministic: the same files every time."""
from __future__ import annotations

import numpy as np
import pandas as pd

from gptquant.market.calendar import sessions

STOCKS = ("600000.SH", "600519.SH", "000001.SZ", "000002.SZ", "300750.SZ", "601318.SH")


def write_world(root, start="2021-01-04", end="2021-04-30", seed=7, overrides=None):
    """bars/<code>.csv (date, open, high, low, close, volume) and index/000300.csv; overrides: code -> {date: {..}}."""
    rng = np.random.default_rng(seed)
    days = sessions(start, end)
    (root / "bars").mkdir(parents=True, exist_ok=True)
    (root / "index").mkdir(parents=True, exist_ok=True)
    for j, code in enumerate(STOCKS):
        steps = rng.normal(0.001 * (j - 2), 0.015, len(days))
        close = np.round(10.0 * (j + 1) * np.exp(np.cumsum(steps)), 2)
        open_ = np.round(close * (1 + rng.normal(0, 0.004, len(days))), 2)
        frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "open": open_, "close": close,
                              "high": np.maximum(open_, close) + 0.05, "low": np.minimum(open_, close) - 0.05,
                              "volume": rng.integers(2_000_000, 6_000_000, len(days)).astype(float)})
        for day, change in (overrides or {}).get(code, {}).items():
            at = frame["date"] == day
            for k, v in change.items():
                frame.loc[at, k] = v
        frame.to_csv(root / "bars" / f"{code}.csv", index=False)
    index = np.round(5000 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, len(days) + 30))), 2)
    before = sessions(pd.Timestamp(start) - pd.Timedelta(days=60), pd.Timestamp(start) - pd.Timedelta(days=1))[-30:]
    all_days = before.append(days)
    pd.DataFrame({"date": all_days.strftime("%Y-%m-%d"), "code": "000300", "close": index[-len(all_days):]}) \
        .to_csv(root / "index" / "csi300_000300_daily.csv", index=False)
    return root


def predictions(root, start, end, seed=3):
    """A StockRanker-style prediction table (date, instrument in BigQuant spelling, score), ranked per day."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in sessions(start, end):
        scores = rng.normal(size=len(STOCKS))
        for code, s in zip(STOCKS, scores):
            rows.append({"date": day, "instrument": code.replace(".SH", ".SHA").replace(".SZ", ".SZA"), "score": s})
    df = pd.DataFrame(rows)
    return df.sort_values(["date", "score"], ascending=[True, False]).reset_index(drop=True)
