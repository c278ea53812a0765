"""Nightly run cost: a cold run (empty score cache) vs the next night's run after 1 % new news.

Runs backtests/astock_real.toml (or --config) on the shared data: the cold run sees the news minus its latest
1 %, the second run all of it, as when a night's news arrives. Prints wall time per stage, the ratio and the
number of texts each run scored. The model is exported into a bundle cache before timing (a one-off cost).

    python benchmarks/nightly_incremental.py [--start 2018-07-01] [--end 2020-12-31] [--new 0.01]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "backtests" / "astock_real.toml"))
    ap.add_argument("--news", default=str(SHARED / "data" / "astock_news" / "astock_news.csv"))
    ap.add_argument("--start", default="2018-07-01")
    ap.add_argument("--end", default="2020-12-31")
    ap.add_argument("--new", type=float, default=0.01, help="share of the news that is new on the second night")
    args = ap.parse_args()
    if not Path(args.news).is_file():
        print(f"needs {args.news} (the shared data beside the repo; set GPTQUANT_SHARED)")
        return 1
    from gptquant.jobs.nightly import run_nightly
    from gptquant import load_model

    os.environ.setdefault("GPTQUANT_DATA_ROOT", str(SHARED / "data"))
    os.environ.setdefault("GPTQUANT_MODEL", str(SHARED / "models" / "gpt2-zh-fin-mini"))
    os.environ["GPTQUANT_START"], os.environ["GPTQUANT_END"] = args.start, args.end
    t0 = time.perf_counter()
    load_model(os.environ["GPTQUANT_MODEL"])  # export once into the bundle cache, outside the timings
    print(f"bundle ready in {time.perf_counter() - t0:.1f} s (export happens once per checkpoint, not per night)")

    news = pd.read_csv(args.news, dtype=str, keep_default_na=False)
    order = pd.to_datetime(news["datetime"]).argsort(kind="stable")
    news = news.iloc[order]
    t = pd.to_datetime(news["datetime"])
    window = news[(t >= args.start) & (t < pd.Timestamp(args.end) + pd.Timedelta(days=1))]
    n_new = max(1, round(len(window) * args.new))
    cut = news.index.get_loc(window.index[-n_new])  # the cold run stops before the window's latest n_new articles
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "news.csv"
        news.iloc[:cut].to_csv(src, index=False)
        over = {"news": {"sources": [str(src)]}}
        runs = []
        for label in ("cold", "+new"):
            if label == "+new":
                news.to_csv(src, index=False)  # the night's news arrives
            t0 = time.perf_counter()
            res = run_nightly(args.config, out=Path(tmp) / "runs", overrides=over, progress=False)
            res["wall"] = time.perf_counter() - t0
            runs.append(res)
    cold, inc = runs
    print(f"\nwindow {args.start} .. {args.end}: {cold['articles']} articles cold, {inc['articles']} on the second night "
          f"({inc['articles'] - cold['articles']} new)")
    print(f"{'stage':<10} {'cold s':>8} {'+1% s':>8} {'ratio':>7}")
    for stage in cold["timings"]:
        a, b = cold["timings"][stage], inc["timings"].get(stage, float("nan"))
        print(f"{stage:<10} {a:8.2f} {b:8.2f} {a / b if b else float('inf'):7.1f}")
    print(f"{'total':<10} {cold['wall']:8.2f} {inc['wall']:8.2f} {cold['wall'] / inc['wall']:7.1f}   (wall clock; backtests "
          "start during the analysis, so stage times overlap)")
    print(f"texts scored: cold {cold['scored']}, second night {inc['scored']}")
    print("IC table of the second run (column {}):".format(inc["analysis"]["column"]))
    for kind in ("ic", "rank_ic"):
        print(f"  {kind:<8}" + "  ".join(f"{h} {v:+.4f}" if v is not None else f"{h} -" for h, v in inc["analysis"][kind].items()))
    for b in inc["backtests"]:
        s = b["summary"] or {}
        print(f"  backtest {b['name']}: {b['status']}, " + ", ".join(f"{k} {s[k]:.4f}" for k in ("annual_return", "sharpe", "benchmark_return")
                                                                  if s.get(k) is not None) + f"; {b.get('resume')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
