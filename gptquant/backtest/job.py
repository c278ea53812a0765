"""One backtest described by a config (a TOML file or a dict): check it, load its strategy module and run it.

Paths in the config are relative to the config file. A strategy module with `initialize` runs through
`trade()`; otherwise its `bt.Strategy` subclass runs through `run()`. `run_config` is the reusable part
(the `backtest` verb, a parameter sweep and the nightly call it; it also takes the bars and the panel as
DataFrames). `[panel] columns` keeps only the panel columns a native strategy reads as lines;
`[backtest] checkpoints = "file"` makes the run resumable (gptquant.backtest.resume).
"""
from __future__ import annotations

import importlib
import sys
import types
from datetime import timedelta
from pathlib import Path

from ..config import ANY, load_toml, resolve_path
from ..errors import GptquantError
from ..tables import read_table

SCHEMA = {  # typed: a wrong type fails at load naming its key (gptquant.config); dates stay ANY (TOML date or text)
    "title": str, "sweep": ANY,
    "data": {"bars": str, "volume_unit": str, "instruments": str | list[str], "max_instruments": int,
             "benchmark": str, "benchmark_data": str},
    "panel": {"path": str, "momentum": int, "panel_at": str, "columns": list[str]},
    "backtest": {"start": ANY, "end": ANY, "capital_base": float, "checkpoints": str},
    "strategy": {"module": str, "class": str, "params": dict},
    "output": {"dir": str},
}
REQUIRED = ("data.bars", "backtest.start", "backtest.end", "strategy.module")


def load_config(path) -> dict:
    """A backtest (or sweep) config, checked: unknown keys (rules included) refused by their dotted name."""
    from dataclasses import fields
    from typing import get_type_hints

    from .broker import Rules

    types = get_type_hints(Rules)
    return load_toml(path, dict(SCHEMA, rules={f.name: types[f.name] for f in fields(Rules)}), REQUIRED)[0]


def run_config(config: dict, base: Path, overrides: dict | None = None, *, bars=None, panel=None, module=None,
               benchmark=None):
    """Run one config; `overrides` replaces strategy params (the hook for sweeps). `bars` and `panel`
    (DataFrames already loaded by the caller, e.g. the nightly), `module` (the strategy module) and
    `benchmark` (closes: datetime, close) replace [data] bars, [panel] path, [strategy] module and
    [data] benchmark_data: a Ray task reads no file (gptquant.backtest.shipped)."""
    base = Path(base)
    data, bt_cfg, strat_cfg = config["data"], config["backtest"], config["strategy"]
    inputs = load_inputs(config, base, bars=bars, panel=panel, module=module)
    bars, panel, instruments, unit = inputs["bars"], inputs["panel"], inputs["instruments"], inputs["unit"]
    start, end, rules, module = inputs["start"], inputs["end"], inputs["rules"], inputs["module"]
    panel_cfg = config.get("panel", {})
    params = {**strat_cfg.get("params", {}), **(overrides or {})}
    common = dict(panel=panel, capital_base=float(bt_cfg.get("capital_base", 1e6)), benchmark=data.get("benchmark", "000300.SH"),
                  benchmark_data=benchmark if benchmark is not None else
                  resolve_path(base, data["benchmark_data"]) if "benchmark_data" in data else None,
                  checkpoints=resolve_path(base, bt_cfg["checkpoints"]) if bt_cfg.get("checkpoints") else None)
    title = config.get("title", Path(strat_cfg["module"]).stem)
    if hasattr(module, "initialize"):
        from .bigquant import trade

        return trade(instruments, start, end, module.initialize, getattr(module, "handle_data", None),
                     getattr(module, "before_trading_start", None), getattr(module, "prepare", None),
                     order_price_field_buy=rules.order_price_field_buy, order_price_field_sell=rules.order_price_field_sell,
                     volume_limit=rules.volume_limit, data=bars, options=params, rules=rules, volume_unit=unit,
                     panel_at=panel_cfg.get("panel_at", "open"), title=title, **common)
    from .engine import run

    strategy = _strategy_class(module, strat_cfg.get("class"))
    result = run(strategy, data=bars, start=start, end=end, instruments=instruments, volume_unit=unit, rules=rules,
                 **common, **params)
    result.title = title
    return result


def load_inputs(config: dict, base: Path, *, bars=None, panel=None, module=None) -> dict:
    """What every run of a config reads, loaded once: bars (a frame, or a source with the instruments and
    volume unit the run still applies), panel, start, end, rules and the strategy module. `bars` and
    `panel` given as DataFrames are used instead of the config's files."""
    import pandas as pd

    from ..market.prices import load_bars, momentum_panel
    from .broker import Rules

    base = Path(base)
    data, bt_cfg, strat_cfg = config["data"], config["backtest"], config["strategy"]
    start, end = pd.Timestamp(bt_cfg["start"]), pd.Timestamp(bt_cfg["end"])
    panel_cfg = config.get("panel", {})
    lookback = int(panel_cfg.get("momentum", 0))
    bars = bars if bars is not None else resolve_path(base, data["bars"])
    instruments, unit = data.get("instruments"), data.get("volume_unit", "shares")
    if "max_instruments" in data or lookback:  # needs the bars here; otherwise the run loads them once itself
        bars = load_bars(bars, instruments, start - timedelta(days=2 * lookback + 30), end, volume_unit=unit)
        if "max_instruments" in data:
            bars = _most_covered(bars, int(data["max_instruments"]), start, end)
        instruments, unit = None, "shares"
    if ("path" in panel_cfg or panel is not None) and lookback:
        raise GptquantError("[panel]: give either path or momentum, not both")
    if panel is None and "path" in panel_cfg:
        panel = read_table(resolve_path(base, panel_cfg["path"]), "panel", formats={".parquet", ".pq"})
    elif panel is None and lookback:
        panel = momentum_panel(bars, lookback)
    if panel is not None and "columns" in panel_cfg:
        missing = [c for c in panel_cfg["columns"] if c not in panel.columns]
        if missing:
            raise GptquantError(f"[panel] columns: {', '.join(missing)} not in the panel (it has {', '.join(panel.columns)})")
        panel = panel[list(panel_cfg["columns"])]
    return {"bars": bars, "instruments": instruments, "unit": unit, "panel": panel, "start": start, "end": end,
            "rules": Rules(**config.get("rules", {})),
            "module": module if module is not None else _load_module(strat_cfg["module"], base)}


def out_dir(config, path: Path) -> Path:
    if "dir" in config.get("output", {}):
        return resolve_path(path.parent, config["output"]["dir"])
    return Path("backtest_out") / path.stem


def _most_covered(bars, n: int, start, end):
    """The n instruments with the most bars in [start, end] (ties by code): a reproducible universe cut."""
    inside = bars[bars["datetime"].between(start, end)]
    counts = inside.groupby("instrument").size().reset_index(name="n").sort_values(["n", "instrument"],
                                                                                   ascending=[False, True])
    keep = set(counts["instrument"].head(n))
    return bars[bars["instrument"].isin(keep)].reset_index(drop=True)


def _load_module(spec: str, base: Path):
    if spec.endswith(".py"):
        return module_from_source(*strategy_source(spec, base))
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise GptquantError(f"cannot import strategy module {spec!r}: {exc}") from None


def strategy_source(spec: str, base: Path) -> tuple[str, bytes, str]:
    """(module name, source bytes, file) of a strategy file: what travels to a Ray task instead of its path."""
    path = resolve_path(base, spec)
    if not path.is_file():
        raise GptquantError(f"strategy module {path} not found")
    return f"gptquant_strategy_{path.stem}", path.read_bytes(), str(path)


def module_from_source(name: str, source: bytes, origin: str):
    """The module a strategy file's source makes, registered as `name` (pickling and dataclasses need it);
    `origin` names it in tracebacks and in a resumable run's code hash."""
    module = types.ModuleType(name)
    module.__file__ = origin
    sys.modules[name] = module
    exec(compile(source, origin, "exec"), module.__dict__)
    return module


def _strategy_class(module, name):
    import backtrader as bt

    if name:
        cls = getattr(module, name, None)
        if not (isinstance(cls, type) and issubclass(cls, bt.Strategy)):
            raise GptquantError(f"{module.__name__}: {name!r} is not a backtrader Strategy class")
        return cls
    found = [c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, bt.Strategy) and c.__module__ == module.__name__]
    if len(found) != 1:
        raise GptquantError(f"{module.__name__}: define initialize() (BigQuant style) or exactly one bt.Strategy "
                            f"subclass, or name it with strategy.class (found {len(found)})")
    return found[0]
