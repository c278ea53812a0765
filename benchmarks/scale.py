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
    python benchmarks/scale.py --cost           # articles per core-hour, uer-size int8 bundle; a night's cost
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


_LOADED, _CPU = [0.0], [0.0, 0.0]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def clock() -> float:
    """Start of a stage's timed work: notes the peak RSS so far (imports and inputs) and the CPU time."""
    _LOADED[0], _CPU[0] = rss_mb(), cpu_s()
    return time.perf_counter()


def lap(t0: float) -> float:
    """End of the timed work: wall seconds since clock(); its CPU seconds go to the report too. On a machine
    shared with other jobs the CPU time is what the stage costs; the wall time also counts the others."""
    _CPU[1] = cpu_s() - _CPU[0]
    return time.perf_counter() - t0


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
    secs = lap(t0)
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
    secs = lap(t0)
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
    secs = lap(t0)
    panel.to_parquet(d / f"panel-{n}.parquet")
    return secs, {"panel_rows": len(panel), "rejects": len(rejects)}


def stage_factor(d: Path, n: int) -> tuple[float, dict]:
    import pandas as pd

    from gptquant.analysis.factor import analyze

    panel = pd.read_parquet(d / f"panel-{n}.parquet")
    bars, _, _ = _days(d)
    t0 = clock()
    res = analyze(panel, COLUMN, bars)
    secs = lap(t0)
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
    secs = lap(t0)
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
    secs = lap(t0)
    return secs, {"final_value": round(float(res.daily["portfolio_value"].iloc[-1]), 2)}


# ---- cost of scoring: the uer-size int8 bundle on one core ------------------------------------------

RAY_START_S = 1.5 + 6.0  # connect + 2 actors started with the bundle shipped (README, scale_out.py on a 2-CPU cluster)


def score_rate(texts: int) -> dict:
    """Child process: export a uer-size (12 x 768, random weights) int8 bundle, score `texts` texts of ~127 tokens
    on one ORT thread; articles per second on one core."""
    sys.path.insert(0, str(HERE))
    from score_throughput import make_uer_checkpoint, texts_of_about

    from gptquant.lm.export import export_bundle
    from gptquant.runtime import Scorer

    with tempfile.TemporaryDirectory(prefix="gq-cost-") as tmp:
        t0 = time.perf_counter()
        bundle = Path(tmp) / "int8"
        export_bundle(make_uer_checkpoint(Path(tmp)), bundle, int8=True, max_length=128)
        export_s = time.perf_counter() - t0
        scorer = Scorer(bundle, threads=1, batch_size=32)
        batch = texts_of_about(texts)
        scorer.score(batch[:32])  # warm-up
        t0 = clock()
        out = scorer.score(batch)
        secs = lap(t0)
    return {"texts": texts, "seconds": secs, "cpu_s": _CPU[1], "tokens": int(out["n_tokens"].sum()), "export_s": export_s,
            "peak_mb": rss_mb()}


def cost(texts: int, env: dict) -> None:
    p = subprocess.run([sys.executable, __file__, "--cost-child", str(texts)], capture_output=True, text=True, env=env)
    if p.returncode:
        sys.stderr.write(p.stderr[-3000:])
        raise SystemExit("the scoring measurement failed")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    rate = r["texts"] / r["cpu_s"]  # per CPU second: what a core that is not shared would do
    print(f"uer-size int8 bundle, 1 ORT thread, {r['texts']} texts of ~{r['tokens'] / r['texts']:.0f} tokens: "
          f"{r['cpu_s']:.1f} CPU s ({r['seconds']:.1f} s wall at load average {os.getloadavg()[0]:.1f}): "
          f"{rate:.2f} articles per core-second = {rate * 3600:,.0f} articles per core-hour "
          f"({r['tokens'] / r['cpu_s']:,.0f} tok/s; peak RSS {r['peak_mb']:,.0f} MB; export {r['export_s']:.0f} s)")
    for night in (50_000, 100_000):
        hours = night / rate / 3600
        one = ", ".join(f"{c} cores {hours / c * 60:.0f} min" for c in (2, 16))
        ray = ", ".join(f"{w} workers {(night / (rate * w) + RAY_START_S) / 60:.1f} min" for w in (32, 64))
        print(f"  a night of {night:,} articles: {hours:.1f} core-hours; one machine: {one}; Ray cluster: {ray} "
              f"(+{RAY_START_S:.1f} s start-up per run)")


def run_stage(stage: str, d: Path, n: int) -> None:
    """Child process: one stage, one JSON line on stdout."""
    secs, detail = globals()[f"stage_{stage}"](d, n)
    print(json.dumps({"stage": stage, "rows": n, "seconds": round(secs, 2), "cpu_s": round(_CPU[1], 2),
                      "peak_mb": round(rss_mb()), "start_mb": round(_LOADED[0]), **detail}))


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
    ap.add_argument("--cost", type=int, metavar="TEXTS", nargs="?", const=256,
                    help="instead: articles per core-hour of the uer-size int8 bundle on TEXTS texts (default 256; needs torch "
                         "and ../shared) and what a night of news costs")
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--cost-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GPTQUANT_THREADS": os.environ.get("GPTQUANT_THREADS", "1"), "OMP_NUM_THREADS": "1"}
    if args.stage:
        run_stage(args.stage, Path(args.dir), int(args.rows))
        return 0
    if args.cost_child:
        print(json.dumps(score_rate(args.cost_child)))
        return 0
    if args.cost:
        cost(args.cost, env)
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
            extra = ", ".join(f"{k} {v}" for k, v in r.items()
                              if k not in ("stage", "rows", "seconds", "cpu_s", "peak_mb", "start_mb"))
            ok = "MISS" if r["peak_mb"] > GOALS[1] or r["cpu_s"] > GOALS[0] else "ok  " if r["seconds"] <= GOALS[0] else "cpu "
            print(f"{ok} {s:7} {n:>9,} rows  {r['seconds']:7.2f} s wall {r['cpu_s']:7.2f} s CPU  peak RSS {r['peak_mb']:6,} MB "
                  f"(inputs loaded {r['start_mb']:,} MB)  load {os.getloadavg()[0]:.1f}  {extra}", flush=True)
    print(f"\ngrowth from {rows[0]:,} to {rows[-1]:,} rows ({rows[-1] / rows[0]:.0f}x rows):")
    for s in stages:
        by = {r["rows"]: r for r in results if r["stage"] == s}
        if rows[0] in by and rows[-1] in by:
            a, b = by[rows[0]], by[rows[-1]]
            print(f"  {s:7} wall {b['seconds'] / max(a['seconds'], 1e-9):5.1f}x  CPU {b['cpu_s'] / max(a['cpu_s'], 1e-9):5.1f}x  "
                  f"peak RSS {b['peak_mb'] / a['peak_mb']:4.1f}x")
    misses = [r for r in results if r["cpu_s"] > GOALS[0] or r["peak_mb"] > GOALS[1]]
    print(f"goal (each stage <= {GOALS[0]:.0f} s of CPU and <= {GOALS[1] / 1024:.0f} GB; 'cpu' marks a stage whose wall "
          "time, shared with other jobs, was over): "
          + ("met" if not misses else "missed by " + ", ".join(f"{r['stage']}@{r['rows']:,}" for r in misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
