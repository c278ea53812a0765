"""At a market's size: 4,000 instruments x 1,250 sessions and 100k / 300k / 1M news rows, each stage timed with its
peak memory.

Stages, each in its own process (so its peak RSS is its own: imports, its inputs read from disk, and the work):
  news    read_news of the CSV: decoding, parsing, validation (every row an article or a reject)
  cache   the scoring pipeline over every article with a score cache that holds them all (all hits, no model)
  panel   build_panel from the articles and their features
  factor  analyze() of sentiment_ewm against the bars (IC, quantiles, turnover, decay)
  vector  one top-K backtest on the vector engine (alignment included)
  event   the same top-K backtest on the event engine (backtrader, strategies/sentiment_topk.py)
The world is the demo world's generator scaled up (benchmarks/scale_world.py). Goal on the 2-core machine: each
stage <= 60 s and <= 4 GB peak RSS, and time growing no faster than the rows.

    python benchmarks/scale.py                  # 4,000 x 1,250, rows 100k,300k,1M (minutes; several GB of disk)
    python benchmarks/scale.py --quick          # 300 x 250, rows 10k,30k,100k (about a minute)
    python benchmarks/scale.py --rows 1000000 --stages news,cache --dir /tmp/scale   # one size, some stages
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STAGES = ("news", "cache", "panel", "factor", "vector", "event")
GOALS = (60.0, 4096.0)  # seconds, MB of peak RSS per stage
COLUMN = "sentiment_ewm"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


_LOADED = [0.0]


def clock() -> float:
    """Start of a stage's timed work: notes the peak RSS so far (imports and inputs)."""
    _LOADED[0] = rss_mb()
    return time.perf_counter()


# ---- stages (each runs in a fresh process; inputs come from the files of earlier stages) --------------

def _days(d: Path):
    import pandas as pd

    bars = pd.read_parquet(d / "bars.parquet")
    days = bars["datetime"].drop_duplicates().sort_values()
    return bars, days.iloc[20], days.iloc[-1]


def stage_news(d: Path, n: int) -> tuple[float, dict]:
    from gptquant.runtime.news import read_news

    t0 = clock()
    articles, rejects = read_news(d / f"news-{n}.csv")
    secs = time.perf_counter() - t0
    articles.to_parquet(d / f"articles-{n}.parquet")
    return secs, {"articles": len(articles), "rejects": len(rejects)}


def stage_cache(d: Path, n: int) -> tuple[float, dict]:
    import numpy as np
    import pandas as pd

    from gptquant.features.cache import ScoreCache, text_key
    from gptquant.features.pipeline import PART_SIZE, Counts, make_parts, score_parts

    articles = pd.read_parquet(d / f"articles-{n}.parquet", columns=["article_id", "text"])
    features = pd.read_parquet(d / f"features-{n}.parquet")
    cache = ScoreCache(d / f"cache-{n}.sqlite")
    fill = 0.0
    if len(cache) < n:  # setup, timed apart: every text scored once before
        t0 = time.perf_counter()
        for s in range(0, n, 50_000):
            part = articles["text"].iloc[s: s + 50_000]
            cache.put_many("scale-bundle", [text_key(t) for t in part], features.iloc[s: s + 50_000])
        fill = time.perf_counter() - t0

    def no_model(parts):  # the engine: every text must come from the cache
        for start, misses in parts:
            if len(misses):
                raise RuntimeError(f"{len(misses)} cache misses in part {start}")
            yield start, pd.DataFrame({"article_id": [], **{c: np.array([], dtype=features[c].dtype) for c in features}})

    counts = Counts()
    t0 = clock()
    got = [f for _, f in score_parts(make_parts(articles, PART_SIZE), no_model, cache=cache,
                                     bundle_hash="scale-bundle", counts=counts)]
    secs = time.perf_counter() - t0
    out = pd.concat(got, ignore_index=True)
    same = bool(np.allclose(out[features.columns].to_numpy(), features.to_numpy()))
    return secs, {"hits": counts.cached, "equal_to_stored": same, "fill_s": round(fill, 1)}


def stage_panel(d: Path, n: int) -> tuple[float, dict]:
    import pandas as pd

    from gptquant.features.panel import build_panel

    news = pd.read_parquet(d / f"articles-{n}.parquet", columns=["article_id", "datetime", "instruments"])
    feats = pd.read_parquet(d / f"features-{n}.parquet").assign(article_id=news["article_id"].to_numpy())
    t0 = clock()
    panel, rejects = build_panel(feats, news, return_rejects=True)
    secs = time.perf_counter() - t0
    panel.to_parquet(d / f"panel-{n}.parquet")
    return secs, {"panel_rows": len(panel), "rejects": len(rejects)}


def stage_factor(d: Path, n: int) -> tuple[float, dict]:
    import pandas as pd

    from gptquant.analysis.factor import analyze

    panel = pd.read_parquet(d / f"panel-{n}.parquet")
    bars, _, _ = _days(d)
    t0 = clock()
    res = analyze(panel, COLUMN, bars)
    secs = time.perf_counter() - t0
    ic = res["ic_summary"]["rank_ic"]["1D"]["mean"]
    return secs, {"rows_used": res["coverage"]["rows_used"], "rank_ic_1d": round(ic, 4) if ic is not None else None}


def stage_vector(d: Path, n: int) -> tuple[float, dict]:
    import pandas as pd

    from gptquant.backtest import Rules
    from gptquant.backtest.vector import Market, top_k

    panel = pd.read_parquet(d / f"panel-{n}.parquet", columns=[COLUMN])
    bars, start, end = _days(d)
    t0 = clock()
    out = top_k(Market.build(bars, panel, start, end), Rules(), 1e7, column=COLUMN, top_k=50, rebalance_every=5)
    secs = time.perf_counter() - t0
    return secs, {"final_value": round(float(out.value[-1]), 2)}


def stage_event(d: Path, n: int) -> tuple[float, dict]:
    import importlib.util

    import pandas as pd

    from gptquant.backtest import trade

    spec = importlib.util.spec_from_file_location("sentiment_topk", REPO / "strategies" / "sentiment_topk.py")
    strat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strat)
    panel = pd.read_parquet(d / f"panel-{n}.parquet", columns=[COLUMN])
    bars, start, end = _days(d)
    t0 = clock()
    res = trade(None, start, end, strat.initialize, None, strat.before_trading_start, data=bars, panel=panel,
                benchmark=None, capital_base=1e7, options={"column": COLUMN, "top_k": 50, "rebalance_every": 5})
    secs = time.perf_counter() - t0
    return secs, {"final_value": round(float(res.daily["portfolio_value"].iloc[-1]), 2)}


def run_stage(stage: str, d: Path, n: int) -> None:
    """Child process: one stage, one JSON line on stdout."""
    secs, detail = globals()[f"stage_{stage}"](d, n)
    print(json.dumps({"stage": stage, "rows": n, "seconds": round(secs, 2), "peak_mb": round(rss_mb()),
                      "start_mb": round(_LOADED[0]), **detail}))


# ---- driver -----------------------------------------------------------------------------------------

def child(args: list[str], env: dict) -> dict:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if p.returncode:
        sys.stderr.write(p.stderr[-3000:])
        raise SystemExit(f"stage {args} failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 instruments x 250 sessions, rows 10k,30k,100k")
    ap.add_argument("--instruments", type=int, default=4000)
    ap.add_argument("--sessions", type=int, default=1250)
    ap.add_argument("--rows", default="100000,300000,1000000", help="news row counts, comma-separated")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"subset of {','.join(STAGES)}")
    ap.add_argument("--event-rows", default="max", help="row counts the event engine runs at ('max', 'all' or a list)")
    ap.add_argument("--dir", help="work folder (kept; a world already there is reused); default: a temp folder")
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GPTQUANT_THREADS": os.environ.get("GPTQUANT_THREADS", "1"), "OMP_NUM_THREADS": "1"}
    if args.stage:
        run_stage(args.stage, Path(args.dir), int(args.rows))
        return 0
    if args.quick:
        args.instruments, args.sessions, args.rows = 300, 250, "10000,30000,100000"
    rows = sorted(int(r) for r in args.rows.split(","))
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(sorted(unknown))}")
    event_rows = rows if args.event_rows == "all" else [rows[-1]] if args.event_rows == "max" else \
        [int(r) for r in args.event_rows.split(",")]
    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="gq-scale-")
    d = Path(args.dir or tmp.name)
    d.mkdir(parents=True, exist_ok=True)
    spec = {"instruments": args.instruments, "sessions": args.sessions, "rows": rows}
    if not (d / "world.json").is_file() or json.loads((d / "world.json").read_text()) != spec:
        t0 = time.perf_counter()
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from pathlib import Path; from scale_world import write_world; "
                f"write_world(Path({str(d)!r}), {args.instruments}, {args.sessions}, {rows})")
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        (d / "world.json").write_text(json.dumps(spec))
        print(f"world: {args.instruments:,} instruments x {args.sessions:,} sessions, news {', '.join(f'{r:,}' for r in rows)} rows, "
              f"written in {time.perf_counter() - t0:.0f} s to {d}")
    results = []
    for n in rows:
        for s in stages:
            if s == "event" and n not in event_rows:
                continue
            r = child(["--stage", s, "--rows", str(n), "--dir", str(d)], env)
            results.append(r)
            extra = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("stage", "rows", "seconds", "peak_mb", "start_mb"))
            ok = "ok  " if r["seconds"] <= GOALS[0] and r["peak_mb"] <= GOALS[1] else "MISS"
            print(f"{ok} {s:7} {n:>9,} rows  {r['seconds']:7.2f} s  peak RSS {r['peak_mb']:6,} MB "
                  f"(inputs loaded {r['start_mb']:,} MB)  {extra}", flush=True)
    print(f"\ngrowth from {rows[0]:,} to {rows[-1]:,} rows ({rows[-1] / rows[0]:.0f}x rows):")
    for s in stages:
        by = {r["rows"]: r for r in results if r["stage"] == s}
        if rows[0] in by and rows[-1] in by:
            a, b = by[rows[0]], by[rows[-1]]
            print(f"  {s:7} time {b['seconds'] / max(a['seconds'], 1e-9):5.1f}x  peak RSS {b['peak_mb'] / a['peak_mb']:4.1f}x  "
                  f"({b['seconds'] / rows[-1] * 1e6:.1f} s per million rows at {rows[-1]:,})")
    misses = [r for r in results if r["seconds"] > GOALS[0] or r["peak_mb"] > GOALS[1]]
    print(f"goal (each stage <= {GOALS[0]:.0f} s and <= {GOALS[1] / 1024:.0f} GB): "
          + ("met" if not misses else "missed by " + ", ".join(f"{r['stage']}@{r['rows']:,}" for r in misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
