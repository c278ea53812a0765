"""`gptquant backtest --sweep CONFIG.toml`: a grid of strategy parameters, one independent backtest per point.

The config is an ordinary backtest config plus a `[sweep]` table mapping strategy parameters to lists of
values; the grid is their product, in the order written. Every swept parameter needs its default in
`[strategy.params]` (so a typo cannot silently sweep nothing). Each grid point is a task: `run_task` runs
`run_config` with the point as overrides and writes its own row (`task-NNNN.json`) atomically; a task that
raises becomes a row with status "failed" and its error — the others still run. Tasks go to a local
process pool (one worker runs them in this process) or to Ray; Ray is imported only for `--engine ray`.
The rows are gathered into `sweep_results.parquet` and recorded as one run in the SQLite run history
(gptquant.history: one `runs` row named `sweep:<config>`, one `backtests` row per task).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from ..errors import GptquantError
from ..atomic import atomic_write
from ..jsonsafe import finite_floats
from ..parallel import pool_map, ray_map
from ..ray_session import one_line, ray_session

SCALARS = (bool, int, float, str)
log = logging.getLogger(__name__)
RETRIES = 2  # new runs of a Ray task lost with its worker or node (a task's own error is a failed row)


def expand_grid(config: dict, where) -> list[dict]:
    """The grid points of `[sweep]`, each a dict of strategy-parameter overrides."""
    sweep = config.get("sweep")
    if not isinstance(sweep, dict) or not sweep:
        raise GptquantError(f"{where}: --sweep needs a [sweep] table of parameter lists, e.g. top_k = [5, 10]")
    defaults = config.get("strategy", {}).get("params", {})
    for name, values in sweep.items():
        if name not in defaults:
            raise GptquantError(f"{where}: sweep.{name} has no default in [strategy.params]; add {name} there "
                                f"(known: {', '.join(defaults) or 'none'})")
        if not isinstance(values, list) or not values:
            raise GptquantError(f"{where}: sweep.{name} must be a non-empty list of values, got {values!r}")
        kinds = {float if type(v) is int else type(v) for v in values}  # ints and floats may mix
        if not all(isinstance(v, SCALARS) for v in values) or len(kinds) > 1:
            raise GptquantError(f"{where}: sweep.{name} must list numbers, strings or booleans of one kind, got {values!r}")
        if len(set(map(repr, values))) < len(values):
            raise GptquantError(f"{where}: sweep.{name} lists a value twice: {values!r}")
    names = list(sweep)
    return [dict(zip(names, point)) for point in itertools.product(*(sweep[n] for n in names))]


def task_name(task: int) -> str:
    return f"task-{task:04d}"


def run_task(config: dict, base: str, task: int, params: dict, out_dir: str | None, inputs: dict | None = None) -> dict:
    """One grid point: the backtest with `params` as overrides. Never raises for the strategy's or the
    data's errors: they become a failed row. The row is also written to `<out_dir>/task-NNNN.json`
    (not when out_dir is None: on Ray only the driver writes). `inputs`: run_config's bars, panel,
    module and benchmark, loaded already (a Ray task's, gptquant.backtest.shipped)."""
    from .job import run_config

    t0 = time.perf_counter()
    row = {"task": task, "name": task_name(task), "params": params, "status": "ok", "error": None, "summary": None}
    try:
        result = run_config(config, Path(base), overrides=params, **(inputs or {}))
        row["summary"] = finite_floats(result.summary)
    except Exception as exc:  # one grid point's failure is a result, not the end of the sweep
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["seconds"] = round(time.perf_counter() - t0, 3)
    if out_dir is not None:
        write_row(Path(out_dir), row)
    return row


def write_row(out_dir: Path, row: dict) -> None:
    from ..atomic import atomic_write_text

    from ..names import safe_name

    atomic_write_text(out_dir / f"{safe_name(row['name'], 'sweep point')}.json", json.dumps(row, ensure_ascii=False, indent=1) + "\n")


# ---- engines --------------------------------------------------------------------------------------

def _task(args: tuple) -> dict:
    return run_task(*args)


def _local(tasks, workers: int):
    """Yields (args, row or exception) as tasks finish. One worker runs them here; more use spawned processes
    (never forked: a strategy may hold threads or open files), at most two tasks queued per worker."""
    return pool_map(_task, tasks, workers)


def _ray_task(driver_version: str, config: dict, base: str, task: int, params: dict, shipped: dict) -> dict:
    from ..ray_session import check_version
    from .shipped import inputs

    check_version(driver_version)
    return run_task(config, base, task, params, None, inputs(shipped))


def _ray(tasks, workers: int, address: str | None, out: Path):
    """Ray tasks (1 CPU each), at most `workers` in flight, on the cluster ray_session connects to (see
    gptquant.ray_session). More workers than CPUs just queue on the CPUs there are. The driver reads every
    input once and ships it (gptquant.backtest.shipped: frames in the object store, the strategy as source),
    so nodes need no files of the user's; only the driver writes, so a task lost with its worker is simply
    run again (up to RETRIES times, each one logged)."""
    from ..version import __version__
    from .shipped import ship

    config, base = tasks[0][0], tasks[0][1]
    with ray_session(workers, address) as ray:
        config, shipped = ship(config, Path(base))
        ref = ray.put(shipped)
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_task)  # retried by ray_map, which counts them

        def retried(args, exc, count):
            log.warning("lost a Ray sweep worker (%s); %s run again (%d retries so far)", type(exc).__name__,
                        task_name(args[2]), count)

        for args, row in ray_map(ray, lambda a: remote.remote(__version__, config, *a[1:4], ref), tasks, workers,
                                 retries=RETRIES, on_retry=retried):
            if isinstance(row, dict):
                write_row(out, row)
            elif isinstance(getattr(row, "cause", None), GptquantError):  # e.g. another gptquant version
                raise GptquantError(one_line(row.cause)) from None
            yield args, row


# ---- the sweep --------------------------------------------------------------------------------------

def run_sweep(config_path, out=None, *, engine: str = "local", workers: int | None = None, address: str | None = None,
              history=None, progress: bool = True, check: str = "sample"):
    """Run every grid point of CONFIG's [sweep]; returns the results table (one row per task, in grid order).

    Writes `<out>/task-NNNN.json` per task, `<out>/sweep_results.parquet`, and one run in the history
    (default `<out>/history.sqlite`). Columns: task, name, status, error, seconds, param_<name>..., and the
    summary metrics (NaN for failed tasks)."""
    from tqdm import tqdm

    from .job import load_config, out_dir

    path = Path(config_path)
    config = load_config(path)
    grid = expand_grid(config, path)
    if engine not in ("local", "ray", "vector"):
        raise GptquantError(f"engine must be local, ray or vector, got {engine!r}")
    workers = workers or (os.cpu_count() or 1)
    if workers < 1:
        raise GptquantError(f"workers must be positive, got {workers}")
    if address and engine != "ray":
        raise GptquantError("--address applies only to --engine ray")
    out = (Path(out) if out else out_dir(config, path).with_name(out_dir(config, path).name + "_sweep")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("task-*.json"):  # rows of an earlier sweep in this folder would mix in
        stale.unlink()

    base = str(path.parent.resolve())
    tasks = [(config, base, i, params, str(out)) for i, params in enumerate(grid)]
    rows: dict[int, dict] = {}
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    if engine == "vector":  # gptquant.backtest.vector_sweep: one process, a sample re-run on the event engine
        from .vector_sweep import vector_rows

        mapped = vector_rows(tasks, check, task_name, write_row)
    else:
        mapped = _ray(tasks, workers, address, out) if engine == "ray" else _local(tasks, workers)
    with tqdm(total=len(tasks), unit="task", desc="sweep", disable=None if progress else True, file=sys.stderr) as bar:
        for (_, _, i, params, _), row in mapped:
            if isinstance(row, BaseException):  # the worker itself was lost: still a row, never a gap
                row = {"task": i, "name": task_name(i), "params": params, "status": "failed", "summary": None,
                       "error": f"{type(row).__name__}: {one_line(row)}",
                       "seconds": None}
                write_row(out, row)
            rows[i] = row
            bar.update()
    seconds = round(time.perf_counter() - t0, 3)

    table = _table([rows[i] for i in range(len(tasks))], list(grid[0]))
    atomic_write(out / "sweep_results.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    _record(config, path, out, history, rows, started, seconds, engine, workers)
    table.attrs["out"] = str(out)
    return table


def _table(rows: list[dict], names: list[str]):
    import pandas as pd

    from .result import SUMMARY_KEYS

    records = []
    for r in rows:
        rec = {"task": r["task"], "name": r["name"], "status": r["status"], "error": r["error"], "seconds": r["seconds"]}
        rec.update({f"param_{k}": r["params"][k] for k in names})
        rec.update({k: (r["summary"] or {}).get(k) for k in SUMMARY_KEYS})
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    for k in SUMMARY_KEYS:
        table[k] = pd.to_numeric(table[k]).astype("float64")
    table["seconds"] = table["seconds"].astype("float64")
    return table



def _record(config, path: Path, out: Path, history, rows: dict, started: str, seconds: float, engine: str, workers: int):
    """One run in the history: status ok when every task succeeded, else failed."""
    from ..history import History

    failed = [r for r in rows.values() if r["status"] != "ok"]
    run = {"run_id": f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",
           "config_name": f"sweep:{path.stem}",
           "config_hash": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
           "started": started, "seconds": seconds, "status": "failed" if failed else "ok", "run_dir": str(out),
           "timings": {"sweep": seconds},
           "analysis": {"sweep": {"engine": engine, "workers": workers, "tasks": len(rows), "failed": len(failed),
                                  "grid": config["sweep"]}},
           "backtests": [{"name": r["name"] + " " + ",".join(f"{k}={v}" for k, v in r["params"].items()),
                          "status": r["status"], "summary": r["summary"], "error": r["error"], "seconds": r["seconds"]}
                         for _, r in sorted(rows.items())]}
    with History(Path(history) if history else out / "history.sqlite") as hist:
        hist.record(run)


def main(args) -> int:
    """CLI face: prints one line per failed task and the best rows; exit 1 when any task failed."""
    table = run_sweep(args.config, args.out, engine=args.engine, workers=args.workers, address=args.address,
                      history=args.history, check=getattr(args, "check", "sample"))
    ok = table[table["status"] == "ok"]
    params = [c for c in table.columns if c.startswith("param_")]
    if len(ok):
        best = ok.sort_values("sharpe", ascending=False, na_position="last").head(5)
        print(best[["name", *params, "sharpe", "annual_return", "max_drawdown"]].to_string(index=False))
    failed = table[table["status"] != "ok"]
    for _, r in failed.iterrows():
        print(f"FAILED {r['name']} ({', '.join(f'{p[6:]}={r[p]}' for p in params)}): {r['error']}")
    print(f"{len(table)} tasks, {len(ok)} ok, {len(failed)} failed; wrote {table.attrs['out']}/sweep_results.parquet "
          f"and the run history")
    return 1 if len(failed) else 0
