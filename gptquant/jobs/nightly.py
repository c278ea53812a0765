"""The nightly job: load news -> score (through the score cache) -> panel -> analysis -> backtests -> report -> record.

A run lives in `<out>/<config name>/<run id>/`; every file in it is written atomically, `<out>/<config name>/latest`
names the newest finished run, and `<out>/history.sqlite` keeps every run (see history.py). Only texts the
score cache has not seen are scored, so a night with 1 % new news scores 1 % of the articles. A failing
backtest is recorded and the others still run; the run's status (and the CLI's exit code) says so.
A lock file per config (flock) stops two runs of the same config from overlapping.

Config (TOML; strings may use ${VAR} and ${VAR:-default}):

    title = "..."                       # optional
    workers = 2                         # backtests run side by side in forked processes (default: CPU count)
    root = "../demo_out"                # base of the data and model paths (relative to the config's folder)
    [news]      sources = ["world/news.csv"]  (or source = "..."), start, end (articles outside [start, end]
                are not scored; they go to news_rejects.csv with the reason)
    [prices]    bars, volume_unit ("shares"|"lots"), benchmark ("000300.SH"), benchmark_data
    [model]     bundle (a bundle or a checkpoint folder), threads, batch_size, batch_tokens, cache (SQLite; default: the
                GPTQUANT_SCORE_CACHE setting, relative paths are under the output folder), engine ("local"|"ray"),
                workers (scoring workers, default 1), address (Ray)
    [panel]     cutoff, halflife, aggregates, columns, carry, ai_score_max, ai_weight, start, end
    [analysis]  column ("auto": sentiment_ewm when the bundle has a sentiment head, else nll_mean_ewm),
                horizons, quantiles, price, min_assets
    [[backtest]] name, module (relative to the config's folder), class, params (column defaults to the
                analysis column), rules, start, end, capital_base, universe ("panel"|"all"; with "all" a
                name first in tonight's news does not change the feeds, so resuming still works), max_instruments, panel_at, columns (panel columns a native strategy
                reads as lines; default all), resume (default true: continue from the last unchanged session)
    [compare]   metric = absolute change flagged against the previous run (e.g. sharpe = 0.3, rank_ic = 0.02)
    [output]    dir (relative to the config's folder; default ./runs), history (default <dir>/history.sqlite)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from ..config import ANY, load_toml, resolve_path
from ..errors import GptquantError

SCHEMA = {  # typed: a wrong type fails at load naming its key (gptquant.config); dates stay ANY (TOML date or text)
    "title": str, "root": str, "workers": int, "compare": dict[str, float],
    "news": {"sources": str | list[str], "source": str, "start": ANY, "end": ANY},
    "prices": {"bars": str, "volume_unit": str, "benchmark": str, "benchmark_data": str},
    "model": {"bundle": str, "threads": int, "batch_size": int, "batch_tokens": int, "cache": str, "engine": str,
              "workers": int, "address": str},
    "panel": {"cutoff": str, "halflife": float, "aggregates": list[str], "columns": list[str], "carry": int,
              "ai_score_max": float, "ai_weight": float, "start": ANY, "end": ANY},
    "analysis": {"column": str, "horizons": list[int], "quantiles": int, "price": str, "min_assets": int},
    "backtest": [{"name": str, "module": str, "class": str, "params": dict, "rules": dict, "start": ANY, "end": ANY,
                  "capital_base": float, "universe": str, "max_instruments": int, "panel_at": str,
                  "columns": list[str], "resume": bool}],
    "output": {"dir": str, "history": str},
}
STAGES = ("load", "score", "panel", "analysis", "backtests", "report", "record")
SCORE_PART = 256  # articles per scoring part: the cache keeps every finished part if the run is killed


# ---- config ---------------------------------------------------------------------------------------

def load_config(path, overrides: dict | None = None) -> dict:
    """Read, check and expand a nightly config; `overrides` (same shape) are merged in before the checks.
    Adds `_path`, `_name` (file stem) and `_hash` (of the file's bytes and the overrides)."""
    path = Path(path)
    config, digest = load_toml(path, SCHEMA, required=("model.bundle", "prices.bars"), overrides=overrides)
    names = []
    for i, b in enumerate(config.get("backtest", [])):
        for need in ("name", "module"):
            if need not in b:
                raise GptquantError(f"{path}: backtest[{i}] needs a {need!r}")
        names.append(b["name"])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GptquantError(f"{path}: backtest name(s) used twice: {', '.join(dup)}")
    news = config.get("news", {})
    if not (news.get("sources") or news.get("source")):
        raise GptquantError(f"{path}: missing news.sources")
    config["_path"], config["_name"], config["_hash"] = path.resolve(), path.stem, digest
    return config


def _paths(config: dict, out: str | None) -> dict:
    """Every path of the config made absolute."""
    here = config["_path"].parent
    root = resolve_path(here, config.get("root", "."))
    news = config["news"]
    sources = news.get("sources") or [news["source"]]
    sources = [sources] if isinstance(sources, str) else sources
    prices = config["prices"]
    out_dir = Path(out) if out else resolve_path(here, config.get("output", {}).get("dir", "runs"))
    out_dir = out_dir.resolve()
    model = config["model"]
    cache = model.get("cache")
    if cache is None:
        from ..features.cache import default_path

        cache_path = default_path()
    else:
        cache_path = resolve_path(out_dir, cache)
    return {
        "root": root, "news": [resolve_path(root, s) for s in sources], "bars": resolve_path(root, prices["bars"]),
        "benchmark_data": resolve_path(root, prices["benchmark_data"]) if "benchmark_data" in prices else None,
        "bundle": resolve_path(root, model["bundle"]), "cache": cache_path, "out": out_dir,
        "history": resolve_path(out_dir, config.get("output", {}).get("history", "history.sqlite")),
        "modules": {b["name"]: (str(resolve_path(here, b["module"])) if str(b["module"]).endswith(".py") else b["module"])
                    for b in config.get("backtest", [])},
    }


def _file_hash(path: Path) -> str:
    from ..bundle import sha256_file

    return sha256_file(path)[:16] if path.is_file() else "missing"


def inputs_hash(config: dict, paths: dict) -> str:
    """One hash of everything a run reads: the config, news, prices, model files, the strategy modules with
    the project modules they import, and the installed gptquant's own code."""
    from ..codehash import module_file, package_hash, sources_hash

    h = hashlib.sha256(config["_hash"].encode())
    h.update(f"gptquant:{package_hash()}\n".encode())
    for name, module in sorted(paths["modules"].items()):
        found = module_file(str(module), config["_path"].parent)
        h.update(f"{name}:{sources_hash(found) if found else 'missing'}\n".encode())
    files = [*paths["news"], paths["bars"], paths["benchmark_data"]]
    bundle = paths["bundle"]
    if bundle.is_dir():
        files += sorted(p for p in bundle.iterdir() if p.is_file())
    for f in files:
        if f is None:
            continue
        if f.is_dir():
            for p in sorted(f.rglob("*")):
                if p.is_file():
                    h.update(f"{p}:{_file_hash(p)}\n".encode())
        else:
            h.update(f"{f}:{_file_hash(f)}\n".encode())
    return h.hexdigest()[:16]


# ---- lock -----------------------------------------------------------------------------------------

@contextmanager
def run_lock(path: Path, what: str):
    """An exclusive, non-blocking flock on `path`; another holder gets a clear error (the OS frees it if we die)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise GptquantError(f"another nightly run of {what} is in progress ({holder}; lock {path})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        fh.close()


# ---- the run ----------------------------------------------------------------------------------------

def _atomic_json(path: Path, obj) -> None:
    from ..bundle import atomic_write_text

    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str, allow_nan=False) + "\n")


def _atomic_csv(path: Path, frame) -> None:
    from ..bundle import atomic_write_text

    atomic_write_text(path, frame.to_csv(index=False))


def _new_run_dir(config_dir: Path) -> tuple[str, Path]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        run_id = f"{stamp}-{n:03d}"
        try:
            (config_dir / run_id).mkdir(parents=True)
            return run_id, config_dir / run_id
        except FileExistsError:
            continue
    raise GptquantError(f"{config_dir}: cannot create a run folder")


def read_sources(paths: list[Path]):
    """All news sources as one articles table (ids prefixed by the file stem when there are several) + rejects."""
    import pandas as pd

    from ..runtime.news import read_news

    arts, rejs = [], []
    for p in paths:
        if not p.is_file():
            raise GptquantError(f"news source {p}: file not found")
        a, r = read_news(p)
        if len(paths) > 1:
            a["article_id"] = [f"{p.stem}:{x}" for x in a["article_id"]]
            r["article_id"] = [f"{p.stem}:{x}" for x in r["article_id"]]
        arts.append(a.assign(source_file=str(p)))
        rejs.append(r.assign(source_file=str(p)))
    articles = pd.concat(arts, ignore_index=True) if len(arts) > 1 else arts[0]
    rejects = pd.concat(rejs, ignore_index=True) if len(rejs) > 1 else rejs[0]
    if len(paths) > 1:  # rows of different files must stay distinguishable for the panel's rejects
        articles["row"] = range(1, len(articles) + 1)
    return articles, rejects


def _window(news, rejects, start, end):
    """Keep articles published in [start, end] (dates include the whole day); the others become rejects."""
    import pandas as pd

    if start is None and end is None:
        return news, rejects
    t = news["datetime"]
    lo = pd.Timestamp(start) if start is not None else t.min()
    hi = pd.Timestamp(end) + pd.Timedelta(days=1) if end is not None and len(str(end)) <= 10 else (pd.Timestamp(end) if end is not None else None)
    out = (t < lo) | ((t >= hi) if hi is not None else False)
    if out.any():
        extra = pd.DataFrame({"row": news.loc[out, "row"].to_numpy(), "article_id": news.loc[out, "article_id"].to_numpy(),
                              "reason": f"outside the news window [{start}, {end}]"})
        if "source_file" in news.columns:
            extra["source_file"] = news.loc[out, "source_file"].to_numpy()
        rejects = pd.concat([rejects, extra], ignore_index=True)
    return news[~out].reset_index(drop=True), rejects


def load_bars_cached(source: Path, cache_dir: Path, volume_unit: str, start=None):
    """load_bars of a price file (bars from `start` on), kept as Parquet keyed by the file's hash: parsing a
    large CSV every night would cost more than the rest of an incremental run. Folders of bar files are
    read directly."""
    import pandas as pd

    from ..features.panel import write_parquet
    from ..market.prices import load_bars

    def since(bars):
        return bars if start is None else bars[bars["datetime"] >= start].reset_index(drop=True)

    if not Path(source).is_file():
        return since(load_bars(source, volume_unit=volume_unit))
    stem = re.sub(r"\W", "_", Path(source).stem)
    cached = cache_dir / f"bars-{stem}-{_file_hash(Path(source))}-{volume_unit}.parquet"
    if cached.is_file():  # the filter is applied while reading, not on a copy of every bar
        return pd.read_parquet(cached, filters=None if start is None else [("datetime", ">=", pd.Timestamp(start))])
    bars = load_bars(source, volume_unit=volume_unit)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob(f"bars-{stem}-*-{volume_unit}.parquet"):
        old.unlink(missing_ok=True)  # keep only the latest version of this price file
    write_parquet(bars, cached)
    return since(bars)


def choose_column(panel, wanted: str = "auto") -> tuple[str, list[str]]:
    """The panel column to analyse and trade, and notes for the report."""
    if wanted != "auto":
        if wanted not in panel.columns:
            raise GptquantError(f"[analysis] column {wanted!r} is not in the panel (columns: {', '.join(panel.columns)})")
        return wanted, []
    for c in ("sentiment_ewm", "nll_mean_ewm"):
        if c in panel.columns:
            notes = [] if c.startswith("sentiment") else [
                "the bundle has no sentiment head: the panel has no sentiment column, so analysis and backtests use "
                f"{c} (a language-model statistic) instead"]
            return c, notes
    raise GptquantError(f"panel has neither sentiment_ewm nor nll_mean_ewm; set [analysis] column (columns: {', '.join(panel.columns)})")


def run_nightly(config_path, out=None, force: bool = False, scorer=None, progress: bool = True,
                overrides: dict | None = None) -> dict:
    """Run one nightly job; returns {run_id, run_dir, status, failed, timings, report, skipped}.

    status is "ok", "failed" (a backtest failed; the rest of the run completed) or "skipped" (inputs unchanged
    since the previous ok run and not `force`). A stage before the backtests failing records the run as
    "error" and raises GptquantError. `scorer` replaces the config's bundle (anything with .score(texts) and
    .bundle_hash), for tests and for callers that hold a loaded model. `overrides` are merged into the
    config (same shape), e.g. {"news": {"sources": [...]}}.
    """
    from ..history import History

    config = load_config(config_path, overrides)
    paths = _paths(config, out)
    config_dir = paths["out"] / config["_name"]
    with run_lock(config_dir / ".lock", str(config["_path"])):
        fingerprint = inputs_hash(config, paths)
        with History(paths["history"]) as hist:
            previous = hist.previous(config["_name"])
            if not force and previous and previous["status"] == "ok" and previous["inputs_hash"] == fingerprint:
                print(f"[nightly] inputs unchanged since run {previous['run_id']}: nothing to do (--force runs anyway)")
                return {"run_id": previous["run_id"], "run_dir": previous["run_dir"], "status": "skipped", "failed": [],
                        "timings": {}, "report": str(Path(previous["run_dir"]) / "report.html"), "skipped": True}
            return _run(config, paths, config_dir, fingerprint, hist, previous, scorer, progress)


@contextmanager
def _stage(timings: dict, name: str):
    print(f"[nightly] {name} ...", flush=True)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 3)
        print(f"[nightly] {name} done in {timings[name]:.2f} s", flush=True)


def _run(config, paths, config_dir, fingerprint, hist, previous, scorer, progress) -> dict:
    import pandas as pd

    from ..features.cache import ScoreCache
    from ..features.pipeline import Counts, score_articles
    from ..features.panel import build_panel, write_parquet
    from ..history import compare

    run_id, run_dir = _new_run_dir(config_dir)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    t_start = time.perf_counter()
    timings: dict = {}
    record = {"run_id": run_id, "config_name": config["_name"], "config_hash": config["_hash"], "inputs_hash": fingerprint,
              "started": started, "status": "error", "run_dir": str(run_dir), "timings": timings, "analysis": {},
              "backtests": []}
    stage, backtests = "load", None
    try:
        with _stage(timings, "load"):
            news, rejects = read_sources(paths["news"])
            news, rejects = _window(news, rejects, config["news"].get("start"), config["news"].get("end"))
            if len(rejects):
                _atomic_csv(run_dir / "news_rejects.csv", rejects)
            if news.empty:
                raise GptquantError(f"no usable news in {', '.join(map(str, paths['news']))} ({len(rejects)} rows rejected)")
            record.update(articles=len(news), data_start=str(news["datetime"].min()), data_end=str(news["datetime"].max()))
        stage = "score"
        with _stage(timings, "score"):
            mcfg = config["model"]
            sizes = dict(threads=mcfg.get("threads"), batch_size=int(mcfg.get("batch_size", 32)),
                         batch_tokens=int(mcfg.get("batch_tokens", 512)))
            if scorer is None:
                from ..runtime import load_model

                scorer = load_model(paths["bundle"], **sizes)
            counts = Counts()
            paths["cache"].parent.mkdir(parents=True, exist_ok=True)
            with ScoreCache(paths["cache"]) as cache:
                feats = score_articles(news, scorer=scorer, cache=cache, counts=counts, part_size=SCORE_PART,
                                       engine=mcfg.get("engine", "local"), workers=int(mcfg.get("workers", 1)),
                                       address=mcfg.get("address"), progress=progress, **sizes)
            write_parquet(feats, run_dir / "features.parquet")
            record.update(bundle_hash=scorer.bundle_hash, scored=counts.scored)
            print(f"[nightly] scored {counts.scored} new text(s) of {len(news)} article(s); the rest came from the cache")
        stage = "panel"
        with _stage(timings, "panel"):
            pc = config.get("panel", {})
            panel, prej = build_panel(feats, news, cutoff=pc.get("cutoff", "09:30"), aggregates=pc.get("aggregates", ("mean", "sum", "count", "maxabs", "ewm")),
                                      halflife=float(pc.get("halflife", 3)), columns=pc.get("columns"), carry=pc.get("carry"),
                                      ai_score_max=pc.get("ai_score_max"), ai_weight=pc.get("ai_weight"),
                                      start=pc.get("start"), end=pc.get("end"), return_rejects=True)
            if panel.empty:
                raise GptquantError("the panel is empty: no news article reached a session (see panel_rejects.csv)")
            write_parquet(panel, run_dir / "panel.parquet")
            if len(prej):
                _atomic_csv(run_dir / "panel_rejects.csv", prej)
        stage = "analysis"
        with _stage(timings, "analysis"):
            from ..analysis.factor import analyze

            ac = config.get("analysis", {})
            column, notes = choose_column(panel, ac.get("column", "auto"))
            days = panel.index.get_level_values("datetime")
            first, last = days.min(), days.max()
            horizons = [int(h) for h in ac.get("horizons", (1, 5, 10))]
            pr = config["prices"]
            bars = load_bars_cached(paths["bars"], paths["out"] / "cache", pr.get("volume_unit", "shares"),
                                    start=first - pd.Timedelta(days=60))
            bar_days = bars["datetime"].drop_duplicates().sort_values()
            last = min(last, bar_days.iloc[-1])  # the carried _ewm rows may run past the last bar
            if len(bar_days) > 1:  # returns (and the benchmark's) need the session before the first one
                first = max(first, bar_days.iloc[1])
            # the backtests need only the panel and the bars: they start now, in worker processes, beside the analysis
            backtests = _Backtests(config, paths, panel, bars, column, first, last, config_dir / "checkpoints")
            result = analyze(panel, column, bars, horizons=horizons, quantiles=int(ac.get("quantiles", 5)),
                             price=ac.get("price", "open"), min_assets=int(ac.get("min_assets", 5)))
            _atomic_json(run_dir / "analysis.json", result)
            record["analysis"] = {kind: {h: v["mean"] for h, v in result["ic_summary"][kind].items()} for kind in ("ic", "rank_ic")}
            record["analysis"]["column"] = column
        stage = "backtests"
        with _stage(timings, "backtests"):
            bt_rows, results = backtests.collect(run_dir)
            record["backtests"] = bt_rows
        timings["backtests"] = backtests.seconds  # from their start, so it overlaps the analysis stage
        stage = "report"
        with _stage(timings, "report"):
            from ..analysis.report import write_report

            record["seconds"] = round(time.perf_counter() - t_start, 3)
            comparison = compare(previous, record, config.get("compare", {}))
            info = {"config": str(config["_path"]), "run_id": run_id, "started": started, "bundle": str(paths["bundle"]),
                    "bundle_hash": record.get("bundle_hash"), "config_hash": config["_hash"], "inputs_hash": fingerprint,
                    "articles": record["articles"], "scored": record["scored"], "rejected_news": int(len(rejects)),
                    "panel_rows": int(len(panel)), "panel_rejects": int(len(prej)), "news_window": f"{record['data_start']} .. {record['data_end']}",
                    "panel_sessions": f"{days.min().date()} .. {days.max().date()}",
                    "backtest_window": f"{first.date()} .. {last.date()}", "column": column,
                    "previous_run": previous["run_id"] if previous else None, "timings_s": dict(timings)}
            articles = _article_view(feats, news, column, config.get("panel", {}).get("cutoff", "09:30"))
            report = write_report(run_dir, title=config.get("title", config["_name"]), info=info, analysis=result,
                                  backtests=[{**row, "result": results.get(row["name"])} for row in bt_rows],
                                  articles=articles, feature=articles.attrs["feature"], comparison=comparison, notes=notes)
        stage = "record"
        with _stage(timings, "record"):
            failed = [b["name"] for b in bt_rows if b["status"] != "ok"]
            record["status"] = "failed" if failed else "ok"
            record["seconds"] = round(time.perf_counter() - t_start, 3)
            _atomic_json(run_dir / "run.json", {**record, "comparison": comparison})
            hist.record(record)
            from ..bundle import atomic_write_text

            atomic_write_text(config_dir / "latest", run_id + "\n")
    except Exception as exc:
        if backtests is not None:
            backtests.close()
        record["timings"] = timings
        record["seconds"] = round(time.perf_counter() - t_start, 3)
        record["error"] = f"{stage}: {exc}"
        from ..bundle import atomic_write_text

        atomic_write_text(run_dir / "error.txt", f"stage {stage} failed\n\n{traceback.format_exc()}")
        hist.record(record)
        if isinstance(exc, GptquantError):
            raise GptquantError(f"nightly {config['_name']}: stage {stage} failed: {exc} (run {run_dir})") from exc
        raise
    summary = {"run_id": run_id, "run_dir": str(run_dir), "status": record["status"], "failed": failed,
               "timings": timings, "report": str(report), "skipped": False, "scored": record["scored"],
               "articles": record["articles"], "comparison": comparison, "analysis": record["analysis"],
               "backtests": bt_rows}
    return summary


def _article_view(feats, news, column: str, cutoff: str):
    """Article-level table for the report: session, instruments, text and the base feature of `column`."""
    import pandas as pd

    from ..market.calendar import align_to_sessions

    base = re.sub(r"_(mean|sum|count|maxabs|ewm)$", "", column)
    feature = base if base in feats.columns else ("sentiment" if "sentiment" in feats.columns else "nll_mean")
    view = pd.DataFrame({"article_id": news["article_id"].to_numpy(), "session": align_to_sessions(news["datetime"], cutoff),
                         "datetime": news["datetime"].to_numpy(), "instruments": [", ".join(c) for c in news["instruments"]],
                         "text": news["text"].to_numpy(), "value": feats[feature].to_numpy(dtype="float64")})
    view.attrs["feature"] = feature
    return view


class _Backtests:
    """Every [[backtest]] through gptquant.backtest.job.run_config; a failure is recorded, the others still run.

    They run side by side in `workers` forked processes, which inherit the loaded bars and panel, and start
    as soon as this object is made (collect() waits). Each keeps checkpoints (gptquant.backtest.resume) in
    `checkpoints`/<name>.pkl, so a night whose news only touches the last sessions re-runs only those
    (resume = false in a [[backtest]] turns it off)."""

    def __init__(self, config, paths, panel, bars, column, first, last, checkpoints):
        self.entries, self.outcomes, self._pool = config.get("backtest", []), {}, None
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        self.jobs = {}
        for b in self.entries:
            try:
                cfg = _backtest_config(b, config, paths, panel, bars, column, first, last, checkpoints)
                self.jobs[b["name"]] = (cfg, config["_path"].parent)
            except GptquantError as exc:
                self.outcomes[b["name"]] = ("failed", None, 0.0, f"GptquantError: {exc}", traceback.format_exc())
        workers = int(config.get("workers", min(len(self.jobs), os.cpu_count() or 1) or 1))
        if workers < 1:
            raise GptquantError(f"workers must be >= 1, got {workers}")
        if workers > 1 and len(self.jobs) > 1:
            from ..parallel import ForkPool

            self._pool = ForkPool(_run_one, self.jobs, workers)

    def collect(self, run_dir) -> tuple[list[dict], dict]:
        from concurrent.futures.process import BrokenProcessPool

        from ..jsonsafe import finite_floats

        if self._pool is None:  # run here, now: time them from here
            self._t0 = time.perf_counter()
        try:
            for name, job in self.jobs.items():
                if self._pool is None:
                    self.outcomes[name] = _run_one(job)
                    continue
                try:
                    self.outcomes[name] = self._pool.futures[name].result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory): that backtest failed
                    self.outcomes[name] = ("failed", None, 0.0, f"worker process died: {exc}", traceback.format_exc())
        finally:
            self.close()
        self.seconds = round(time.perf_counter() - self._t0, 3)
        rows, results = [], {}
        for b in self.entries:
            name = b["name"]
            status, result, seconds, msg, trace = self.outcomes[name]
            if status == "ok":
                result.title = name
                result.save(run_dir / "backtests" / name, html=False)  # the run's report.html shows every backtest
                summary = finite_floats(result.summary)
                note = getattr(result, "resume_note", None)
                rows.append({"name": name, "status": "ok", "summary": summary, "error": None, "seconds": seconds, "resume": note})
                results[name] = result
                print(f"[nightly]   {name}: ok in {seconds:.2f} s, annual return {summary.get('annual_return')}, "
                      f"sharpe {summary.get('sharpe')}" + (f" ({note})" if note else ""))
            else:
                from ..bundle import atomic_write_text

                (run_dir / "backtests" / name).mkdir(parents=True, exist_ok=True)
                atomic_write_text(run_dir / "backtests" / name / "error.txt", trace)
                rows.append({"name": name, "status": "failed", "summary": None, "error": msg, "seconds": seconds})
                print(f"[nightly]   {name}: FAILED: {msg}")
        return rows, results

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _backtest_config(b, config, paths, panel, bars, column, first, last, checkpoints) -> dict:
    """A [[backtest]] entry as a gptquant.backtest.job.run_config config (bars and panel passed as frames)."""
    name, pr = b["name"], config["prices"]
    params = dict(b.get("params", {}))
    params.setdefault("column", column)
    data = {"bars": bars, "benchmark": pr.get("benchmark", "000300.SH")}
    if paths["benchmark_data"] is not None:
        data["benchmark_data"] = str(paths["benchmark_data"])
    universe = b.get("universe", "panel")
    if universe == "panel":
        data["instruments"] = sorted(set(panel.index.get_level_values("instrument").unique()) & set(bars["instrument"].unique()))
    elif universe != "all":
        raise GptquantError(f"backtest {name}: universe must be 'panel' or 'all', got {universe!r}")
    if "max_instruments" in b:
        data["max_instruments"] = int(b["max_instruments"])
    panel_cfg = {"path": panel, "panel_at": b.get("panel_at", "open")}
    if "columns" in b:
        panel_cfg["columns"] = list(b["columns"])
    backtest = {"start": str(b.get("start", first.date())), "end": str(b.get("end", last.date())),
                "capital_base": b.get("capital_base", 1_000_000)}
    if b.get("resume", True):
        backtest["checkpoints"] = str(checkpoints / f"{name}.pkl")
    return {"title": f"{name}: {b['module']}", "data": data, "panel": panel_cfg, "backtest": backtest,
            "strategy": {"module": paths["modules"][name], "params": params, **({"class": b["class"]} if "class" in b else {})},
            "rules": b.get("rules", {})}


def _run_one(job: tuple):
    """(status, result, seconds, error message, traceback) of one backtest (config, base folder); never raises."""
    from ..backtest.job import run_config

    cfg, base = job
    t0 = time.perf_counter()
    try:
        result = run_config(cfg, base)
        return "ok", result, round(time.perf_counter() - t0, 3), None, None
    except Exception as exc:  # one backtest's failure must not stop the others
        return "failed", None, round(time.perf_counter() - t0, 3), f"{type(exc).__name__}: {exc}", traceback.format_exc()
