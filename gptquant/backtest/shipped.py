"""What a sweep's Ray tasks need, loaded once by the driver and sent by value, so a node needs none of the
user's files (and a file changed or deleted after the start cannot make tasks disagree).

`ship` reads the config's bars, panel, benchmark closes and strategy file on the driver; the frames go
through Ray's object store, the strategy as its source text. The tasks' config says what was already
applied (instruments, volume unit, momentum) and keeps nothing to read or write: a sweep's tasks have
no checkpoints (only the driver writes). `inputs` turns the shipped dict back into run_config arguments.
"""
from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

from ..config import resolve_path
from ..errors import GptquantError


def ship(config: dict, base: Path) -> tuple[dict, dict]:
    """(config for the tasks, {bars, panel, benchmark, module}) with every file of `config` read here."""
    import pandas as pd

    from ..market.prices import load_bars, load_benchmark
    from .engine import benchmark_source
    from .job import load_inputs, module_from_source, strategy_source

    spec = config["strategy"]["module"]
    source = strategy_source(spec, base) if spec.endswith(".py") else None  # a module name: installed on nodes
    module = module_from_source(*source) if source else None
    try:
        got = load_inputs(config, base, module=module)
        bars = got["bars"]
        if not isinstance(bars, pd.DataFrame):  # the run's window and a margin for its warm-up sessions (<= 12 days)
            bars = load_bars(bars, got["instruments"], got["start"] - timedelta(days=40), got["end"],
                             volume_unit=got["unit"])
        data = config["data"]
        code = data.get("benchmark", "000300.SH")
        bench = None
        if code:
            where = benchmark_source(resolve_path(base, data["benchmark_data"]) if "benchmark_data" in data else None)
            bench = load_benchmark(where, code).rename("close").reset_index()
    except GptquantError as exc:
        raise GptquantError(f"cannot load the sweep's inputs on the driver: {exc}") from None
    tasks = copy.deepcopy(config)
    for table, keys in (("data", ("instruments", "max_instruments", "benchmark_data")),
                        ("panel", ("path", "momentum")), ("backtest", ("checkpoints",))):
        for key in keys:
            tasks.get(table, {}).pop(key, None)
    tasks["data"]["volume_unit"] = "shares"  # load_bars already counted lots as shares
    return tasks, {"bars": bars, "panel": got["panel"], "benchmark": bench, "module": source}


def inputs(shipped: dict) -> dict:
    """run_config's keyword arguments from a shipped dict (on the worker: the strategy's module made here)."""
    from .job import module_from_source

    source = shipped["module"]
    return {**shipped, "module": module_from_source(*source) if source else None}
