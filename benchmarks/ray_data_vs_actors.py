"""Ray Data `map_batches` (an actor pool opening the bundle once per actor) against today's Ray actor engine
(gptquant.runtime.engines), on the same articles, bundle, parts and workers: which should `--engine ray` be?

  python benchmarks/ray_data_vs_actors.py [--limit 400] [--part-size 64] [--workers 2] [--rounds 2]
                                          [--address HOST:PORT]

Both engines get the same `(key, part)` stream and must give features equal to the in-process scorer
(max |diff| printed; the run stops if it is not 0). Each round runs both, alternately (the machine is shared:
alternating spreads its load over both). Figures: wall time for the whole stream including the engine's
start-up (bundle shipped, actors started, sessions opened), articles/s per worker over that wall time, and the
overhead against the in-process scorer's time for the same articles on one core (wall * workers / local).
Ray Data here streams the parts as blocks (`from_pandas`), `map_batches(ScoreBatch,
compute=ActorPoolStrategy(size=N), num_cpus=1, batch_size=None)` (one part per batch, one Scorer per
actor), and `iter_batches` back to the driver, which regroups rows by part key.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))
KEY = "__part__"


class ScoreBatch:
    """A Ray Data actor: unpacks the shipped bundle and opens one Scorer once, then scores each batch (a part)."""

    def __init__(self, packed, spec, driver_version):
        import ray

        from gptquant.runtime.engines import ScorerActor

        self.actor = ScorerActor(ray.get(packed[0]), spec, driver_version)

    def __call__(self, batch):
        key = batch[KEY].iloc[0]
        _, feats = self.actor.score((key, batch.drop(columns=KEY)))
        return feats.assign(**{KEY: key})


@contextmanager
def ray_data_engine(ray, spec, workers: int):
    """A `run(parts)` like gptquant.runtime.engines' Ray engine, on Ray Data."""
    import pandas as pd

    from gptquant.runtime.engines import _pack_bundle
    from gptquant.version import __version__

    packed = [ray.put(_pack_bundle(spec[0]))]  # in a list: Ray Data passes constructor args as they are

    def run(parts):
        parts = list(parts)
        sizes = {key: len(part) for key, part in parts}
        ds = ray.data.from_pandas([part.assign(**{KEY: key}) for key, part in parts])
        ds = ds.map_batches(ScoreBatch, fn_constructor_args=(packed, spec, __version__),
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, batch_size=None,
                            batch_format="pandas")
        got: dict = {}
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            batch = table.to_pandas()  # numpy dtypes, as the other engines give (pandas batches are Arrow-backed)
            for key, rows in batch.groupby(KEY, sort=False):
                got.setdefault(key, []).append(rows.drop(columns=KEY))
                if sum(map(len, got[key])) == sizes[key]:
                    yield key, pd.concat(got.pop(key), ignore_index=True)

    yield run


def timed(engine, parts, frame):
    """(wall s including the engine's start-up, steady articles/s after the first part came back, features)."""
    from gptquant.runtime.engines import restore_order

    t0 = time.perf_counter()
    done, first, after = {}, None, 0
    with engine() as run:
        for key, feats in run(iter(parts)):
            done[key] = feats
            if first is None:
                first = time.perf_counter()
            else:
                after += len(feats)
    end = time.perf_counter()
    return end - t0, after / (end - first), restore_order(frame["article_id"], [done[s] for s, _ in parts])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--news", default=str(SHARED / "data" / "astock_news" / "astock_news.csv"))
    ap.add_argument("--model", default=str(SHARED / "models" / "gpt2-zh-fin-mini"))
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--part-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS"))
    args = ap.parse_args()

    import pandas as pd
    import ray

    from gptquant import load_model
    from gptquant.runtime.engines import open_engine, score_part
    from gptquant.runtime.news import read_news

    articles, _ = read_news(args.news, require_meta=False)
    frame = articles[["article_id", "text"]].head(args.limit).reset_index(drop=True)
    parts = [(s, frame.iloc[s: s + args.part_size]) for s in range(0, len(frame), args.part_size)]
    scorer = load_model(args.model, threads=1)
    t0 = time.perf_counter()
    local = score_part(scorer, frame)
    local_s = time.perf_counter() - t0
    print(f"{len(frame)} articles in {len(parts)} parts, {args.workers} workers x 1 ORT thread, {os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.1f}); in-process: {len(frame) / local_s:.1f} articles/s")
    spec = (str(scorer.bundle_dir), scorer.bundle_hash, 1, scorer.batch_size, 512)

    init = {"address": args.address} if args.address else {"num_cpus": args.workers, "include_dashboard": False}
    ray.init(**init, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = []
    try:
        for rnd in range(args.rounds):
            for name in ("actors", "ray_data"):
                if name == "actors":
                    engine = partial(open_engine, "ray", bundle_dir=scorer.bundle_dir, bundle_hash=scorer.bundle_hash,
                                     workers=args.workers, threads=1, batch_size=scorer.batch_size)
                else:
                    engine = partial(ray_data_engine, ray, spec, args.workers)
                wall, steady, feats = timed(engine, parts, frame)
                diff = (feats.select_dtypes("number").astype("float64")
                        - local.select_dtypes("number").astype("float64")).abs().max().max()
                same = feats.columns.tolist() == local.columns.tolist() and (feats.dtypes == local.dtypes).all()
                if diff != 0 or not same:
                    print(f"{name}: features differ from the in-process scorer (max |diff| {diff}, columns/dtypes "
                          f"equal: {same})\n" + pd.DataFrame({"got": feats.dtypes, "local": local.dtypes}).to_string())
                    return 1
                rows.append({"engine": name, "round": rnd, "wall_s": wall,
                             "articles_per_s_per_worker": len(frame) / wall / args.workers,
                             "steady_per_worker": steady / args.workers,
                             "overhead_vs_local": wall * args.workers / local_s})
                print(f"  round {rnd} {name:>8}: {wall:6.2f} s, {rows[-1]['articles_per_s_per_worker']:6.1f} "
                      f"articles/s per worker ({rows[-1]['steady_per_worker']:.1f} after the first part), max |diff| vs in-process {diff:.0e}", flush=True)
    finally:
        ray.shutdown()
    table = pd.DataFrame(rows).groupby("engine")[["wall_s", "articles_per_s_per_worker", "steady_per_worker", "overhead_vs_local"]].median()
    print("\nmedian over rounds:\n" + table.to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"Ray Data / actors wall time: {table.loc['ray_data', 'wall_s'] / table.loc['actors', 'wall_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
