"""The nightly's stages, in order: each is `(run) -> artifact` and reads what earlier stages left on the run.

    load      news sources -> articles in the window (+ rejects)        gptquant.features.sources
    score     articles -> features through the score cache              gptquant.features.pipeline
    panel     features + articles -> point-in-time panel                gptquant.features.panel
    analysis  bars (once) -> backtests started -> factor analysis       market.bars_cache, backtest.pool, analysis
    backtests wait for the backtests -> rows                            gptquant.backtest.pool
    report    the HTML report                                           gptquant.analysis.report
    record    run.json, the run history, `latest`                       gptquant.history

The runner (gptquant.jobs.nightly.run_stages) times them, and records and reports a failing one.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import GptquantError

SCORE_PART = 256  # articles per scoring part: the cache keeps every finished part if the run is killed


@dataclass
class Run:
    """One night of one config: its settings, where it writes, and every stage's artifact."""

    config: dict
    paths: dict
    run_id: str
    run_dir: Path
    config_dir: Path
    hist: object
    previous: dict | None
    record: dict
    scorer: object = None
    progress: bool = True
    timings: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    backtests: object = None  # the backtest pool, started in the analysis stage
    t_start: float = field(default_factory=time.perf_counter)

    def __getitem__(self, stage: str):
        return self.artifacts[stage]


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str, allow_nan=False) + "\n")


def write_csv(path: Path, frame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def load(run: Run):
    """(articles, rejects): every news source read, the window applied."""
    from ..features.sources import news_window, read_sources

    news, rejects = read_sources(run.paths["news"])
    news, rejects = news_window(news, rejects, run.config["news"].get("start"), run.config["news"].get("end"))
    if len(rejects):
        write_csv(run.run_dir / "news_rejects.csv", rejects)
    if news.empty:
        raise GptquantError(f"no usable news in {', '.join(map(str, run.paths['news']))} ({len(rejects)} rows rejected, "
                            f"see {run.run_dir / 'news_rejects.csv'})")
    run.record.update(articles=len(news), data_start=str(news["datetime"].min()), data_end=str(news["datetime"].max()))
    return news, rejects


def score(run: Run):
    """Article features: only texts the score cache has not seen are scored (gptquant.features.pipeline)."""
    from ..features.cache import ScoreCache
    from ..features.panel import write_parquet
    from ..features.pipeline import Counts, score_articles

    news, _ = run["load"]
    mcfg = run.config["model"]
    sizes = dict(threads=mcfg.get("threads"), batch_size=int(mcfg.get("batch_size", 32)),
                 batch_tokens=int(mcfg.get("batch_tokens", 512)))
    if run.scorer is None:
        from ..lm.bundle_cache import load_model  # a checkpoint is exported once

        run.scorer = load_model(run.paths["bundle"], **sizes)
    counts = Counts()
    run.paths["cache"].parent.mkdir(parents=True, exist_ok=True)
    with ScoreCache(run.paths["cache"]) as cache:
        feats = score_articles(news, scorer=run.scorer, cache=cache, counts=counts, part_size=SCORE_PART,
                               engine=mcfg.get("engine", "local"), workers=int(mcfg.get("workers", 1)),
                               address=mcfg.get("address"), progress=run.progress, **sizes)
    write_parquet(feats, run.run_dir / "features.parquet")
    run.record.update(bundle_hash=run.scorer.bundle_hash, scored=counts.scored)
    print(f"[nightly] scored {counts.scored} new text(s) of {len(news)} article(s); the rest came from the cache")
    return feats


def panel(run: Run):
    """(panel, rejects): the point-in-time daily panel of the features."""
    from ..features.panel import build_panel, write_parquet

    pc = run.config.get("panel", {})
    frame, prej = build_panel(run["score"], run["load"][0], cutoff=pc.get("cutoff", "09:30"),
                              aggregates=pc.get("aggregates", ("mean", "sum", "count", "maxabs", "ewm")),
                              halflife=float(pc.get("halflife", 3)), columns=pc.get("columns"), carry=pc.get("carry"),
                              ai_score_max=pc.get("ai_score_max"), ai_weight=pc.get("ai_weight"),
                              start=pc.get("start"), end=pc.get("end"), return_rejects=True,
                              extra_holidays=pc.get("extra_holidays"))
    if frame.empty:
        raise GptquantError("the panel is empty: no news article reached a session (see panel_rejects.csv)")
    write_parquet(frame, run.run_dir / "panel.parquet")
    if len(prej):
        write_csv(run.run_dir / "panel_rejects.csv", prej)
    return frame, prej


def analysis(run: Run):
    """The factor analysis of the chosen column. The bars are loaded once, here; the backtests need only
    them and the panel, so they start first, in worker processes, beside the analysis."""
    import pandas as pd

    from ..analysis.factor import analyze
    from ..analysis.view import choose_column
    from ..backtest.pool import Backtests
    from ..market.bars_cache import load_bars_cached

    frame = run["panel"][0]
    ac, pr = run.config.get("analysis", {}), run.config["prices"]
    column, notes = choose_column(frame, ac.get("column", "auto"))
    days = frame.index.get_level_values("datetime")
    first, last = days.min(), days.max()
    bars = load_bars_cached(run.paths["bars"], run.paths["out"] / "cache", pr.get("volume_unit", "shares"),
                            start=first - pd.Timedelta(days=60))
    bar_days = bars["datetime"].drop_duplicates().sort_values()
    last = min(last, bar_days.iloc[-1])  # the carried _ewm rows may run past the last bar
    if len(bar_days) > 1:  # returns (and the benchmark's) need the session before the first one
        first = max(first, bar_days.iloc[1])
    entries = [dict(b, module=run.paths["modules"][b["name"]]) for b in run.config.get("backtest", [])]
    defaults = {"params": {"column": column}, "benchmark": pr.get("benchmark", "000300.SH"),
                "benchmark_data": run.paths["benchmark_data"]}
    run.backtests = Backtests(entries, bars, frame, base=run.config["_path"].parent, first=first, last=last,
                              checkpoints=run.config_dir / "checkpoints", defaults=defaults,
                              workers=run.config.get("workers"))
    result = analyze(frame, column, bars, horizons=[int(h) for h in ac.get("horizons", (1, 5, 10))],
                     quantiles=int(ac.get("quantiles", 5)), price=ac.get("price", "open"),
                     min_assets=int(ac.get("min_assets", 5)))
    write_json(run.run_dir / "analysis.json", result)
    run.record["analysis"] = {kind: {h: v["mean"] for h, v in result["ic_summary"][kind].items()} for kind in ("ic", "rank_ic")}
    run.record["analysis"]["column"] = column
    run.artifacts["choice"] = {"column": column, "notes": notes, "first": first, "last": last}
    return result


def backtests(run: Run):
    """(rows, results): every backtest's outcome, saved under backtests/<name>/."""
    from ..jsonsafe import finite_floats

    rows, results = [], {}
    for name, (status, result, seconds, msg, trace) in run.backtests.collect().items():
        folder = run.run_dir / "backtests" / name
        if status == "ok":
            result.title = name
            result.save(folder, html=False)  # the run's report.html shows every backtest
            summary = finite_floats(result.summary)
            note = getattr(result, "resume_note", None)
            rows.append({"name": name, "status": "ok", "summary": summary, "error": None, "seconds": seconds, "resume": note})
            results[name] = result
            print(f"[nightly]   {name}: ok in {seconds:.2f} s, annual return {summary.get('annual_return')}, "
                  f"sharpe {summary.get('sharpe')}" + (f" ({note})" if note else ""))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / "error.txt", trace)
            rows.append({"name": name, "status": "failed", "summary": None, "error": msg, "seconds": seconds})
            print(f"[nightly]   {name}: FAILED: {msg}")
    run.record["backtests"] = rows
    run.timings["backtests"] = run.backtests.seconds  # from their start, so it overlaps the analysis stage
    return rows, results


def report(run: Run):
    """report.html, with the comparison against the previous run."""
    from ..analysis.report import write_report
    from ..analysis.view import article_view
    from ..history import compare

    config, record, choice = run.config, run.record, run["choice"]
    (news, rejects), (frame, prej), (rows, results) = run["load"], run["panel"], run["backtests"]
    days = frame.index.get_level_values("datetime")
    record["seconds"] = round(time.perf_counter() - run.t_start, 3)
    comparison = compare(run.previous, record, config.get("compare", {}))
    run.artifacts["comparison"] = comparison
    info = {"config": str(config["_path"]), "run_id": run.run_id, "started": record["started"],
            "bundle": str(run.paths["bundle"]), "bundle_hash": record.get("bundle_hash"), "config_hash": config["_hash"],
            "inputs_hash": record["inputs_hash"], "articles": record["articles"], "scored": record["scored"],
            "rejected_news": int(len(rejects)), "panel_rows": int(len(frame)), "panel_rejects": int(len(prej)),
            "news_window": f"{record['data_start']} .. {record['data_end']}",
            "panel_sessions": f"{days.min().date()} .. {days.max().date()}",
            "backtest_window": f"{choice['first'].date()} .. {choice['last'].date()}", "column": choice["column"],
            "previous_run": run.previous["run_id"] if run.previous else None, "timings_s": dict(run.timings)}
    articles = article_view(run["score"], news, choice["column"], config.get("panel", {}).get("cutoff", "09:30"))
    return write_report(run.run_dir, title=config.get("title", config["_name"]), info=info, analysis=run["analysis"],
                        backtests=[{**row, "result": results.get(row["name"])} for row in rows],
                        articles=articles, feature=articles.attrs["feature"], comparison=comparison, notes=choice["notes"])


def record(run: Run):
    """The run's status: run.json, one row in the history, and `latest` pointing at this run."""
    failed = [b["name"] for b in run["backtests"][0] if b["status"] != "ok"]
    run.record["status"] = "failed" if failed else "ok"
    run.record["seconds"] = round(time.perf_counter() - run.t_start, 3)
    write_json(run.run_dir / "run.json", {**run.record, "comparison": run["comparison"]})
    run.hist.record(run.record)
    atomic_write_text(run.config_dir / "latest", run.run_id + "\n")
    return failed


STAGES = (("load", load), ("score", score), ("panel", panel), ("analysis", analysis), ("backtests", backtests),
          ("report", report), ("record", record))
