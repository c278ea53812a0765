"""Vector engine vs event engine per sweep point: top-K on a panel column, 300 names x 1,250 sessions, A-share rules on.

Synthetic market (seeded): random-walk prices with limit-up/down opens, ~1 % missing bars (suspensions) and
volumes that let the 2.5 % cap bite. For each point the event engine (`gptquant.trade` with
strategies/sentiment_topk.py, data already in memory) and the vector engine (`vector.top_k` on arrays aligned once)
run the same parameters, then one point of the threshold family (strategies/news_event.py, native face);
prints both times, the ratio and the relative difference in final value.

    python benchmarks/vector_speed.py [--instruments 300] [--sessions 1250] [--points 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def synthetic(n_names: int, n_sessions: int, seed: int = 1, missing: float = 0.01):
    """Bars (load_bars layout, a `missing` share of bars dropped) and a `score` panel known before each open."""
    from gptquant.market.calendar import sessions

    rng = np.random.default_rng(seed)
    days = sessions("2015-01-05", "2026-12-31")[: n_sessions + 1]
    codes = [f"{600000 + i}.SH" if i % 3 else f"{i:06d}.SZ" for i in range(n_names)]
    shape = (len(days), n_names)
    gap = rng.normal(0, 0.01, shape)
    gap[rng.random(shape) < 0.01] = 0.1  # limit-up opens
    gap[rng.random(shape) < 0.01] = -0.1
    close = np.empty(shape)
    opn = np.empty(shape)
    prev = rng.uniform(5, 50, n_names)
    for t in range(len(days)):
        opn[t] = np.round(prev * (1 + gap[t]), 2)
        close[t] = np.round(np.clip(opn[t] * np.exp(rng.normal(0, 0.015, n_names)), prev * 0.9, prev * 1.1), 2)
        prev = close[t]
    volume = rng.choice([2e5, 2e6, 2e7], size=shape)
    keep = rng.random(shape) >= missing
    keep[0] = True
    t, j = np.nonzero(keep)
    bars = pd.DataFrame({"datetime": days[t], "instrument": np.asarray(codes)[j], "open": opn[t, j],
                         "high": np.maximum(opn, close)[t, j], "low": np.minimum(opn, close)[t, j],
                         "close": close[t, j], "volume": volume[t, j]})
    score = pd.DataFrame(close).pct_change(20, fill_method=None).shift(1).to_numpy()
    panel = pd.DataFrame({"datetime": days[t], "instrument": np.asarray(codes)[j], "score": score[t, j]})
    panel = panel.dropna().set_index(["datetime", "instrument"]).sort_index()
    return bars, panel, days[1], days[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=1250)
    ap.add_argument("--points", type=int, default=3, help="grid points timed on both engines")
    args = ap.parse_args()
    os.environ.setdefault("GPTQUANT_THREADS", "1")
    from gptquant.backtest import Rules, trade
    from gptquant.backtest.vector import Market, top_k

    spec = importlib.util.spec_from_file_location("sentiment_topk", REPO / "strategies" / "sentiment_topk.py")
    strat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strat)

    bars, panel, start, end = synthetic(args.instruments, args.sessions)
    rules = Rules(order_price_field_sell="open", volume_limit=0.025)
    t0 = time.perf_counter()
    market = Market.build(bars, panel, start, end)
    build_s = time.perf_counter() - t0
    grid = [dict(top_k=k, rebalance_every=e) for k, e in ((30, 5), (10, 1), (50, 20), (5, 10))][: args.points]
    print(f"market: {args.instruments} names x {len(market.days) - market.first} sessions, "
          f"{int(market.suspended[market.first:].sum()):,} suspended name-sessions; vector align once {build_s:.2f} s")
    ratios, event_total, vector_total = [], 0.0, build_s
    for p in grid:
        t0 = time.perf_counter()
        ev = trade(None, start, end, strat.initialize, None, strat.before_trading_start, data=bars, panel=panel,
                   benchmark=None, order_price_field_sell="open", volume_limit=0.025, rules=rules,
                   options={"column": "score", **p})
        event_s = time.perf_counter() - t0
        runs, t0 = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - t0 < 1.0:
            out = top_k(market, rules, 1e6, column="score", **p)
            runs += 1
        vector_s = (time.perf_counter() - t0) / runs
        e, v = ev.daily["portfolio_value"].iloc[-1], out.value[-1]
        ratios.append(event_s / vector_s)
        event_total, vector_total = event_total + event_s, vector_total + vector_s
        print(f"top_k={p['top_k']:>3} every={p['rebalance_every']:>3}: event {event_s:7.2f} s  vector {vector_s * 1e3:7.1f} ms"
              f"  ratio {event_s / vector_s:6.0f}x  final value event {e:,.2f} vector {v:,.2f} (rel {abs(v / e - 1):.1e})"
              f"  orders {len(ev.orders)} ({(ev.orders['status'] != 'filled').sum()} refused or cut)")
    # the threshold family (strategies/news_event.py, a native bt.Strategy): enter above a score, exit after N sessions
    from gptquant.backtest import run
    from gptquant.backtest.vector import news_event

    spec = importlib.util.spec_from_file_location("news_event", REPO / "strategies" / "news_event.py")
    native = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # backtrader looks its module up
    spec.loader.exec_module(native)
    p = dict(column="score", enter_above=0.15, exit_below=-0.05, hold_sessions=5, weight=0.1)
    t0 = time.perf_counter()
    ev = run(native.NewsEvent, data=bars, panel=panel, start=start, end=end, benchmark=None, rules=rules, **p)
    event_s = time.perf_counter() - t0
    market_native = Market.build(bars, panel, start, end, from_start=True)
    runs, t0 = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - t0 < 1.0:
        out = news_event(market_native, rules, 1e6, **p)
        runs += 1
    vector_s = (time.perf_counter() - t0) / runs
    e, v = ev.daily["portfolio_value"].iloc[-1], out.value[-1]
    ratios.append(event_s / vector_s)
    print(f"news_event enter>0.15 hold 5: event {event_s:7.2f} s  vector {vector_s * 1e3:7.1f} ms  ratio {event_s / vector_s:6.0f}x"
          f"  final value event {e:,.2f} vector {v:,.2f} (rel {abs(v / e - 1):.1e})  orders {len(ev.orders)}")
    print(f"per point: vector is {min(ratios):.0f}x to {max(ratios):.0f}x faster than the event engine "
          f"(median {float(np.median(ratios)):.0f}x); counting the one-off alignment in, the {len(grid)} top-K points: "
          f"{event_total / vector_total:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
