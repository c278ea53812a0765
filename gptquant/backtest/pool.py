"""Several configured backtests over one price table and one panel, side by side (the nightly's [[backtest]]s).

They run in forked workers (gptquant.parallel.ForkPool), which inherit the loaded bars and panel instead of
pickling them, and start as soon as the pool is made, so they overlap whatever the caller does next;
`collect` waits. A backtest that fails is a failed row with its traceback; the others still run.
Each keeps checkpoints (gptquant.backtest.resume) in `checkpoints`/<name>.pkl, so a night whose news only
touches the last sessions re-runs only those (resume = false in an entry turns it off).
"""
from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from ..errors import GptquantError


class Backtests:
    """`entries`: dicts with name, module (a path or module name), params, rules, start, end, capital_base,
    universe ("panel"|"all"), max_instruments, panel_at, columns, resume, class."""

    def __init__(self, entries: list[dict], bars, panel, *, base: Path, first, last, checkpoints: Path,
                 defaults: dict, workers: int | None = None):
        self.entries, self.outcomes, self._pool = entries, {}, None
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        self.jobs = {}
        for b in entries:
            try:
                self.jobs[b["name"]] = (backtest_config(b, bars, panel, first, last, checkpoints, defaults), base,
                                        bars, panel)
            except GptquantError as exc:
                self.outcomes[b["name"]] = ("failed", None, 0.0, f"GptquantError: {exc}", traceback.format_exc())
        workers = int(workers if workers is not None else (min(len(self.jobs), os.cpu_count() or 1) or 1))
        if workers < 1:
            raise GptquantError(f"workers must be >= 1, got {workers}")
        if workers > 1 and len(self.jobs) > 1:
            from ..parallel import ForkPool

            self._pool = ForkPool(run_one, self.jobs, workers)

    def collect(self) -> dict:
        """{name: (status, result, seconds, error message, traceback)} in entry order, once all have finished."""
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:  # run here, now: time them from here
            self._t0 = time.perf_counter()
        try:
            for name, job in self.jobs.items():
                if self._pool is None:
                    self.outcomes[name] = run_one(job)
                    continue
                try:
                    self.outcomes[name] = self._pool.futures[name].result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory): that backtest failed
                    self.outcomes[name] = ("failed", None, 0.0, f"worker process died: {exc}", traceback.format_exc())
        finally:
            self.close()
        self.seconds = round(time.perf_counter() - self._t0, 3)
        return {b["name"]: self.outcomes[b["name"]] for b in self.entries}

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def backtest_config(b: dict, bars, panel, first, last, checkpoints: Path, defaults: dict) -> dict:
    """An entry as a gptquant.backtest.job config; bars and panel go to run_config as arguments.
    `defaults`: params (e.g. the column to trade), benchmark, benchmark_data for every entry."""
    name = b["name"]
    params = {**defaults.get("params", {}), **b.get("params", {})}
    data = {"benchmark": defaults.get("benchmark", "000300.SH")}
    if defaults.get("benchmark_data") is not None:
        data["benchmark_data"] = str(defaults["benchmark_data"])
    universe = b.get("universe", "panel")
    if universe == "panel":
        data["instruments"] = sorted(set(panel.index.get_level_values("instrument").unique()) & set(bars["instrument"].unique()))
    elif universe != "all":
        raise GptquantError(f"backtest {name}: universe must be 'panel' or 'all', got {universe!r}")
    if "max_instruments" in b:
        data["max_instruments"] = int(b["max_instruments"])
    panel_cfg = {"panel_at": b.get("panel_at", "open")}
    if "columns" in b:
        panel_cfg["columns"] = list(b["columns"])
    backtest = {"start": str(b.get("start", first.date())), "end": str(b.get("end", last.date())),
                "capital_base": b.get("capital_base", 1_000_000)}
    if b.get("resume", True):
        backtest["checkpoints"] = str(checkpoints / f"{name}.pkl")
    return {"title": f"{name}: {b['module']}", "data": data, "panel": panel_cfg, "backtest": backtest,
            "strategy": {"module": b["module"], "params": params, **({"class": b["class"]} if "class" in b else {})},
            "rules": b.get("rules", {})}


def run_one(job: tuple):
    """(status, result, seconds, error message, traceback) of one backtest (config, base, bars, panel); never raises."""
    from .job import run_config

    cfg, base, bars, panel = job
    t0 = time.perf_counter()
    try:
        result = run_config(cfg, base, bars=bars, panel=panel)
        return "ok", result, round(time.perf_counter() - t0, 3), None, None
    except Exception as exc:  # one backtest's failure must not stop the others
        return "failed", None, round(time.perf_counter() - t0, 3), f"{type(exc).__name__}: {exc}", traceback.format_exc()
