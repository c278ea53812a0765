"""`gptquant backtest --sweep CONFIG --engine vector`: every grid point on the vector engine, a sample judged by
the event engine.

The config's data, panel, rules and dates are loaded once for the whole grid (as `job.run_config` would load
them for each point) and each point runs `vector.top_k`. Before anything is reported, the sampled points
(default: best, worst and median final value; check="all": every point) run again on the event engine; a
relative difference in final value above `vector.TOLERANCE` on any of them stops the sweep with an error.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..config import resolve_path
from ..errors import GptquantError
from ..jsonsafe import finite_floats
from . import vector
from .vector import FAMILIES, TOLERANCE, Market


def prepare(config: dict, base: Path) -> dict:
    """What every point shares: the Market, rules, capital, benchmark returns and the strategy's defaults."""
    from .engine import bars_for, benchmark_on
    from .job import _strategy_class, load_inputs

    data, bt_cfg, strat_cfg = config["data"], config["backtest"], config["strategy"]
    inputs = load_inputs(config, base)
    module, start, end = inputs["module"], inputs["start"], inputs["end"]
    family = getattr(module, "VECTOR_FAMILY", None)
    if family not in FAMILIES:
        raise GptquantError(f"{strat_cfg['module']}: the vector engine runs strategy modules that declare "
                            f"VECTOR_FAMILY = one of {', '.join(FAMILIES)} (e.g. strategies/sentiment_topk.py); "
                            f"use --engine local for this one")
    panel_cfg = config.get("panel", {})
    defaults = dict(strat_cfg.get("params", {}))
    native = not hasattr(module, "initialize")
    if native:  # a bt.Strategy: its own param defaults; panel_at does not apply
        defaults = {**dict(_strategy_class(module, strat_cfg.get("class")).params._getitems()), **defaults}
    elif panel_cfg.get("panel_at", "open") != "open":
        raise GptquantError("the vector engine reads a BigQuant strategy's panel before the open (panel_at = 'open') only")
    bars = bars_for(inputs["bars"], inputs["instruments"], start, end, volume_unit=inputs["unit"])
    market = Market.build(bars, inputs["panel"], start, end, from_start=native)
    benchmark = data.get("benchmark", "000300.SH")
    source = resolve_path(base, data["benchmark_data"]) if "benchmark_data" in data else None
    bench = benchmark_on(benchmark, source, market.days[market.first:]) if benchmark else None
    return {"market": market, "rules": inputs["rules"], "family": family, "benchmark": benchmark,
            "bench": bench, "capital": float(bt_cfg.get("capital_base", 1e6)),
            "defaults": defaults}


def run_point(shared: dict, params: dict):
    """One grid point on the vector engine: a BacktestResult."""
    options = {**shared["defaults"], **params}
    outcome = getattr(vector, shared["family"])(shared["market"], shared["rules"], shared["capital"], **options)
    return outcome.result(shared["capital"], shared["bench"], shared["benchmark"])


def sample(rows: list[dict], check: str) -> list[dict]:
    """The rows to judge: all, or the best, worst and median final value among the ok rows."""
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (r["final_value"], r["task"]))
    if check == "all" or len(ok) <= 3:
        return ok
    if check != "sample":
        raise GptquantError(f"check must be 'sample' or 'all', got {check!r}")
    return [ok[-1], ok[0], ok[(len(ok) - 1) // 2]]


def crosscheck(config: dict, base: Path, rows: list[dict], check: str = "sample") -> None:
    """Run the sampled points on the event engine; raise when any final value differs beyond TOLERANCE."""
    from .job import run_config

    bad = []
    for row in sample(rows, check):
        event = float(run_config(config, base, overrides=row["params"]).daily["portfolio_value"].iloc[-1])
        row["event_final_value"] = event
        row["relative_difference"] = abs(row["final_value"] / event - 1)
        if not row["relative_difference"] <= TOLERANCE:
            bad.append(f"{row['name']} {row['params']}: vector {row['final_value']:,.4f} vs event {event:,.4f}")
    if bad:
        raise GptquantError(f"the vector engine disagrees with the event engine beyond {TOLERANCE:g} relative in final "
                            f"value; not reporting this sweep: " + "; ".join(bad))


def vector_rows(tasks: list[tuple], check, task_name, write_row):
    """The sweep's engine "vector": yields (task args, row) like the other engines, after the cross-check
    (task_name and write_row are the sweep's, passed in so that the two modules do not import each other)."""
    if not tasks:
        return
    config, base = tasks[0][0], Path(tasks[0][1])
    shared = prepare(config, base)
    rows = []
    for args in tasks:
        _, _, i, params, _ = args
        t0 = time.perf_counter()
        row = {"task": i, "name": task_name(i), "params": params, "status": "ok", "error": None, "summary": None}
        try:
            result = run_point(shared, params)
            row["summary"] = finite_floats(result.summary)
            row["final_value"] = float(result.daily["portfolio_value"].iloc[-1])
        except Exception as exc:  # a point's bad parameters are its own failure, as with the event engine
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        row["seconds"] = round(time.perf_counter() - t0, 4)
        rows.append(row)
    crosscheck(config, base, rows, check)
    for args, row in zip(tasks, rows):
        write_row(Path(args[4]), row)
        yield args, row
