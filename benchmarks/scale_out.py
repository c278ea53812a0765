"""Scale-out of scoring: articles/s on 1 and 2 workers, local process pool and Ray (a local one, or the
cluster at --address / RAY_ADDRESS), and a cost model.

  python benchmarks/scale_out.py [--news ../shared/data/astock_news/astock_news.csv] [--limit N] [--part-size 128]
                                 [--threads 1] [--address HOST:PORT] [--price-per-core-hour 0.10]

Scores the whole news file with the fixture model (../shared/models/gpt2-zh-fin-mini, exported int8 into
the bundle cache on first use) on each engine; every worker gets `--threads` ORT threads so the ratio
measures workers, not threads. For each run it prints the start-up overhead (opening the engine and one
session per worker: process spawn or actor start, bundle verification), the steady rate, and the largest
feature difference from the in-process run (must be ~0: same function, same session settings).

Cost model per million articles on N workers, from the measured figures:
  wall(N) = startup + 1e6 / (N * r1 * e),   core_hours(N) = N * threads * wall(N) / 3600
where r1 is the per-worker steady rate (1 worker) and e the parallel efficiency measured at 2 workers
(rate_2 / (2 * r1)), assumed to hold at larger N: an optimistic bound when parts are small or the
driver (reading news, writing parts) becomes the bottleneck. Ray's cluster start-up is a one-off per cluster
and is reported apart. Measured on whatever machine runs it; the figures are only as good as its idle cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))


def measure(kind: str, workers: int, scorer, frame, part_size: int, threads: int) -> tuple[dict, object]:
    """Start-up (engine + one 1-article part per worker), then the steady run over every part."""

    from gptquant.runtime.engines import open_engine, restore_order

    parts = [(s, frame.iloc[s: s + part_size]) for s in range(0, len(frame), part_size)]
    t0 = time.perf_counter()
    with open_engine(kind, bundle_dir=scorer.bundle_dir, bundle_hash=scorer.bundle_hash, workers=workers,
                     threads=threads, batch_size=scorer.batch_size, scorer=scorer if kind == "local" else None) as run:
        warm = [(-1 - i, frame.iloc[i: i + 1]) for i in range(workers)]
        list(run(warm))
        t1 = time.perf_counter()
        done = dict(run(parts))
        t2 = time.perf_counter()
    feats = restore_order(frame["article_id"], [done[s] for s, _ in parts])
    n_tok = int(feats["n_tokens"].sum())
    row = {"engine": kind, "workers": workers, "startup_s": t1 - t0, "steady_s": t2 - t1,
           "articles_per_s": len(frame) / (t2 - t1), "tokens_per_s": n_tok / (t2 - t1)}
    return row, feats.set_index("article_id").select_dtypes("number").astype("float64")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--news", default=str(SHARED / "data" / "astock_news" / "astock_news.csv"))
    ap.add_argument("--model", default=str(SHARED / "models" / "gpt2-zh-fin-mini"))
    ap.add_argument("--limit", type=int, default=None, help="score only the first N articles (a quicker run)")
    ap.add_argument("--part-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="ORT threads per worker (default 1)")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                    help="a running Ray cluster (default RAY_ADDRESS; none: a local 2-CPU Ray started here)")
    ap.add_argument("--price-per-core-hour", type=float, default=0.10, help="for the cost column (any currency)")
    args = ap.parse_args()
    for p in (args.news, args.model):
        if not Path(p).exists():
            print(f"needs {p} (the shared data/models folder; set GPTQUANT_SHARED)", file=sys.stderr)
            return 2

    import pandas as pd

    from gptquant.runtime.news import read_news
    from gptquant import load_model

    articles, rejects = read_news(args.news, require_meta=False)
    frame = articles[["article_id", "text"]].head(args.limit) if args.limit else articles[["article_id", "text"]]
    scorer = load_model(args.model, threads=args.threads, batch_size=args.batch_size)
    print(f"{len(frame)} articles ({len(rejects)} rejected) from {args.news}; bundle {scorer.bundle_dir.name} "
          f"({scorer.manifest.get('precision')}), {args.threads} ORT thread(s)/worker, parts of {args.part_size}, "
          f"{os.cpu_count()} CPUs")

    rows, ref = [], None
    runs = [("local", 1), ("local", 2)]
    try:
        import ray

        t0 = time.perf_counter()
        cluster = {"address": args.address} if args.address else {"num_cpus": 2, "include_dashboard": False}
        ray.init(**cluster, log_to_driver=False, logging_level="ERROR")
        ray_start = time.perf_counter() - t0
        runs += [("ray", 1), ("ray", 2)]
    except ImportError:
        ray, ray_start = None, None
        print("ray not installed: local engine only (pip install 'gptquant[ray]')")
    try:
        for kind, workers in runs:
            row, feats = measure(kind, workers, scorer, frame, args.part_size, args.threads)
            ref = feats if ref is None else ref
            row["max_abs_diff"] = float((feats - ref).abs().max().max())
            rows.append(row)
            print(f"  {kind:>5} x{workers}: {row['articles_per_s']:8.1f} articles/s, start-up {row['startup_s']:.2f} s, "
                  f"max |diff| vs local x1 {row['max_abs_diff']:.2e}", flush=True)
    finally:
        if ray is not None:
            ray.shutdown()

    table = pd.DataFrame(rows).set_index(["engine", "workers"])
    print("\n" + table.to_string(float_format=lambda v: f"{v:.3g}"))
    if ray_start is not None:
        print(f"Ray {'connect to ' + args.address if args.address else 'local cluster start'} (one-off): {ray_start:.2f} s")

    print("\nscaling ratio (2 workers / 1 worker, steady articles/s):")
    model = {}
    for kind in table.index.get_level_values("engine").unique():
        r1, r2 = table.loc[(kind, 1), "articles_per_s"], table.loc[(kind, 2), "articles_per_s"]
        eff = r2 / (2 * r1)
        model[kind] = (r1, eff, table.loc[(kind, 2), "startup_s"])
        print(f"  {kind:>5}: {r2 / r1:.2f}x  (parallel efficiency {eff:.0%})")

    print(f"\ncost model per 1,000,000 articles (r1 = measured per-worker rate, e = efficiency at 2 workers; "
          f"{args.threads} core(s)/worker at {args.price_per_core_hour} per core-hour):")
    out = []
    for kind, (r1, eff, startup) in model.items():
        for n in (1, 2, 8, 32, 128):
            e = 1.0 if n == 1 else eff
            wall = startup + 1e6 / (n * r1 * e)
            core_h = n * args.threads * wall / 3600
            out.append({"engine": kind, "workers": n, "wall_h": wall / 3600, "core_hours": core_h,
                        "cost": core_h * args.price_per_core_hour})
    print(pd.DataFrame(out).set_index(["engine", "workers"]).to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
