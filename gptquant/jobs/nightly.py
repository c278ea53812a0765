"""The nightly job: load news -> score (through the score cache) -> panel -> analysis -> backtests -> report -> record.

The stages are functions `(run) -> artifact` in gptquant.jobs.stages; this module reads the config, takes the
lock, skips a night whose inputs did not change, and runs the stages (`run_stages`: timed, a failure recorded
with its stage name). What a stage does lives with its owner (features, market, analysis, backtest).

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
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_write_text
from ..config import ANY, load_toml, resolve_path
from ..errors import GptquantError
from ..names import safe_name

SCHEMA = {  # typed: a wrong type fails at load naming its key (gptquant.config); dates stay ANY (TOML date or text)
    "title": str, "root": str, "workers": int, "compare": dict[str, float],
    "news": {"sources": str | list[str], "source": str, "start": ANY, "end": ANY},
    "prices": {"bars": str, "volume_unit": str, "benchmark": str, "benchmark_data": str},
    "model": {"bundle": str, "threads": int, "batch_size": int, "batch_tokens": int, "cache": str, "engine": str,
              "workers": int, "address": str},
    "panel": {"cutoff": str, "halflife": float, "aggregates": list[str], "columns": list[str], "carry": int,
              "ai_score_max": float, "ai_weight": float, "start": ANY, "end": ANY,
              "extra_holidays": ANY},
    "analysis": {"column": str, "horizons": list[int], "quantiles": int, "price": str, "min_assets": int},
    "backtest": [{"name": str, "module": str, "class": str, "params": dict, "rules": dict, "start": ANY, "end": ANY,
                  "capital_base": float, "universe": str, "max_instruments": int, "panel_at": str,
                  "columns": list[str], "resume": bool}],
    "output": {"dir": str, "history": str},
}


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
        names.append(safe_name(b["name"], f"{path}: backtest[{i}].name"))
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
    from ..codehash import sha256_file

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
        took = round(time.perf_counter() - t0, 3)
        timings.setdefault(name, took)  # a stage may time itself (the backtests: from their start)
        print(f"[nightly] {name} done in {took:.2f} s", flush=True)


def _run(config, paths, config_dir, fingerprint, hist, previous, scorer, progress) -> dict:
    from .stages import STAGES, Run

    run_id, run_dir = _new_run_dir(config_dir)
    record = {"run_id": run_id, "config_name": config["_name"], "config_hash": config["_hash"], "inputs_hash": fingerprint,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "error", "run_dir": str(run_dir), "timings": {},
              "analysis": {}, "backtests": []}
    run = Run(config=config, paths=paths, run_id=run_id, run_dir=run_dir, config_dir=config_dir, hist=hist,
              previous=previous, record=record, scorer=scorer, progress=progress, timings=record["timings"])
    run_stages(run, STAGES)
    return {"run_id": run_id, "run_dir": str(run_dir), "status": record["status"], "failed": run["record"],  # failed names
            "timings": run.timings, "report": str(run["report"]), "skipped": False, "scored": record["scored"],
            "articles": record["articles"], "comparison": run["comparison"], "analysis": record["analysis"],
            "backtests": record["backtests"]}


def run_stages(run, stages) -> None:
    """Each (name, stage) in order, its artifact kept as run.artifacts[name] and its time in run.timings (a
    stage may set its own). A failing stage: the run is recorded as "error" with error.txt, the backtests
    still running are stopped, and a GptquantError names the stage."""
    name = None
    try:
        for name, stage in stages:
            with _stage(run.timings, name):
                run.artifacts[name] = stage(run)
    except Exception as exc:
        if run.backtests is not None:
            run.backtests.close()
        run.record["seconds"] = round(time.perf_counter() - run.t_start, 3)
        run.record["error"] = f"{name}: {exc}"
        atomic_write_text(run.run_dir / "error.txt", f"stage {name} failed\n\n{traceback.format_exc()}")
        run.hist.record(run.record)
        if isinstance(exc, GptquantError):
            raise GptquantError(f"nightly {run.config['_name']}: stage {name} failed: {exc} (run {run.run_dir})") from exc
        raise
