"""Engine speed: top-K weekly rebalance over ~300 instruments x ~720 sessions, engine vs a vectorised pandas reference.

Prints sessions/s, bars/s, peak RSS and the engine/reference time ratio, plus how far the two equity curves
are apart (the reference skips the limit, suspension and volume-cap rules, so they differ a little).

    python benchmarks/backtest_speed.py [--instruments 300] [--start 2019-01-02] [--end 2021-11-26]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared")) / "data"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reference(bars, panel, days, k, every, capital, cash_buffer=0.01):
    """Same decisions with pandas/numpy: rank at each rebalance, trade at the open, A-share costs, no rule checks."""
    close = bars.pivot(index="datetime", columns="instrument", values="close").ffill()
    opn = bars.pivot(index="datetime", columns="instrument", values="open").reindex(columns=close.columns)
    vol = bars.pivot(index="datetime", columns="instrument", values="volume").reindex(columns=close.columns)
    score = panel.iloc[:, 0].unstack("instrument").reindex(index=days, columns=close.columns)
    tradable = (vol.reindex(days).fillna(0) > 0).to_numpy()
    prev = close.shift(1).reindex(days).to_numpy()
    o, c, s = opn.reindex(days).to_numpy(), close.reindex(days).to_numpy(), score.to_numpy()
    shares = np.zeros(c.shape[1])
    cash = capital
    held, cash_s = np.zeros_like(c), np.zeros(len(days))
    for i in range(len(days)):
        if i % every == 0:
            sc = np.where(tradable[i] & ~np.isnan(s[i]), s[i], -np.inf)
            top = np.argsort(-sc, kind="stable")[:k]
            top = top[np.isfinite(sc[top])]
            value = cash + np.nansum(shares * prev[i])
            target = np.zeros_like(shares)
            target[top] = np.floor(value * (1 - cash_buffer) / k / prev[i, top] / 100) * 100
            delta = np.where(tradable[i], target - shares, 0.0)
            amount = np.abs(delta) * np.nan_to_num(o[i])
            fees = np.where(delta != 0, np.maximum(amount * 0.0003, 5.0), 0.0) + np.where(delta < 0, amount * 0.001, 0.0)
            cash -= np.sum(delta * np.nan_to_num(o[i])) + fees.sum()
            shares = shares + delta
        held[i], cash_s[i] = shares, cash
    return pd.Series(cash_s + np.nansum(held * c, axis=1), index=days)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=300)
    ap.add_argument("--start", default="2019-01-02")
    ap.add_argument("--end", default="2021-11-26")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--relaxed", action="store_true", help="engine without price limits or volume cap (closer to the reference)")
    args = ap.parse_args()
    src = SHARED / "astock_prices" / "astock_daily.csv"
    if not src.exists():
        print(f"needs {src} (set GPTQUANT_SHARED)", file=sys.stderr)
        return 2

    from gptquant.backtest import Rules, trade
    from gptquant.market.calendar import sessions
    from gptquant.market.prices import load_bars, momentum_panel

    t0 = time.perf_counter()
    bars = load_bars(src, start="2018-10-01", end=args.end, volume_unit="lots")
    inside = bars[bars["datetime"] >= pd.Timestamp(args.start)]
    counts = inside.groupby("instrument").size().reset_index(name="n").sort_values(["n", "instrument"], ascending=[False, True])
    bars = bars[bars["instrument"].isin(set(counts["instrument"].head(args.instruments)))].reset_index(drop=True)
    panel = momentum_panel(bars, 20)
    load_s = time.perf_counter() - t0
    rss_loaded = rss_mib()
    days = sessions(args.start, args.end)
    n_inst = bars["instrument"].nunique()

    spec = importlib.util.spec_from_file_location("sentiment_topk", REPO / "strategies" / "sentiment_topk.py")
    topk = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = topk
    spec.loader.exec_module(topk)

    t0 = time.perf_counter()
    res = trade(None, args.start, args.end, topk.initialize, None, topk.before_trading_start, data=bars, panel=panel,
                benchmark_data=SHARED / "cn_index_daily" / "csi300_000300_daily.csv", order_price_field_sell="open",
                options={"column": "momentum", "top_k": args.top_k, "rebalance_every": args.every},
                rules=Rules(price_limits=not args.relaxed, limit_tolerance=0.01),
                volume_limit=None if args.relaxed else 0.025)
    engine_s = time.perf_counter() - t0
    rss_engine = rss_mib()

    t0 = time.perf_counter()
    ref = reference(bars, panel, days, args.top_k, args.every, 1e6)
    ref_s = time.perf_counter() - t0

    eq = res.daily["portfolio_value"]
    corr = eq.pct_change().corr(ref.pct_change())
    n_bars = n_inst * len(days)
    print(f"universe           : {n_inst} instruments x {len(days)} sessions = {n_bars:,} bars "
          f"({args.start} .. {args.end}, top {args.top_k}, rebalance every {args.every})")
    print(f"load + panel       : {load_s:6.2f} s   (peak RSS so far {rss_loaded:,.0f} MiB)")
    print(f"engine (backtrader): {engine_s:6.2f} s = {len(days) / engine_s:,.0f} sessions/s, {n_bars / engine_s:,.0f} bars/s, "
          f"{len(res.orders)} orders ({(res.orders['status'] != 'filled').sum()} refused or cut)")
    print(f"vectorised pandas  : {ref_s:6.2f} s = {len(days) / ref_s:,.0f} sessions/s, {n_bars / ref_s:,.0f} bars/s")
    print(f"ratio engine/pandas: {engine_s / ref_s:6.1f}x slower")
    print(f"peak RSS           : {rss_engine:,.0f} MiB (after the engine run)")
    print(f"final equity       : engine {eq.iloc[-1]:,.0f}  reference {ref.iloc[-1]:,.0f}  "
          f"({eq.iloc[-1] / ref.iloc[-1] - 1:+.2%}); daily-return correlation {corr:.4f}")
    print("engine summary     : " + ", ".join(f"{k}={v:.3f}" for k, v in res.summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
