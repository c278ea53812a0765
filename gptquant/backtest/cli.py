"""`gptquant backtest CONFIG.toml`: run a BigQuant-style or native strategy module from a config.

Paths in the config are relative to the config file. A strategy module with `initialize` runs through
`trade()`; otherwise its `bt.Strategy` subclass runs through `run()`. `run_config` is the reusable part
(a nightly runner or a parameter sweep calls it with overrides; it also takes the bars and the panel as
DataFrames). `[panel] columns` keeps only the panel columns a native strategy reads as lines;
`[backtest] checkpoints = "file"` makes the run resumable (gptquant.backtest.resume).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from datetime import timedelta
from pathlib import Path

from ..errors import GptquantError

KEYS = {
    "": {"title", "data", "panel", "backtest", "strategy", "rules", "output", "sweep"},
    "data": {"bars", "volume_unit", "instruments", "max_instruments", "benchmark", "benchmark_data"},
    "panel": {"path", "momentum", "panel_at", "columns"},
    "backtest": {"start", "end", "capital_base", "checkpoints"},
    "strategy": {"module", "class", "params"},
    "output": {"dir"},
}


def configure(verb, parser):
    parser.add_argument("config", help="backtest config (TOML): data, panel, strategy module and params, dates, rules")
    parser.add_argument("--out", help="output folder (default: [output] dir, else backtest_out/<config name>)")
    sweep = parser.add_argument_group("parameter sweep (gptquant.backtest.sweep)")
    sweep.add_argument("--sweep", action="store_true", help="run the grid in the config's [sweep] table, one task per point")
    sweep.add_argument("--engine", choices=("local", "ray"), default="local", help="local process pool (default) or Ray")
    sweep.add_argument("--workers", type=int, default=None, help="parallel tasks (default: CPU count)")
    sweep.add_argument("--address", default=None, help="Ray cluster address (default: a running or new local Ray)")
    sweep.add_argument("--history", default=None, help="SQLite run history (default: <out>/history.sqlite)")
    parser.set_defaults(func=main)


def main(args) -> int:
    if getattr(args, "sweep", False):
        from .sweep import main as sweep_main

        return sweep_main(args)
    if getattr(args, "engine", "local") != "local" or any(getattr(args, k, None) for k in ("workers", "address", "history")):
        raise GptquantError("--engine, --workers, --address and --history apply only with --sweep")
    path = Path(args.config)
    config = load_config(path)
    if "sweep" in config:
        raise GptquantError(f"{path}: has a [sweep] table; run it with --sweep (or remove the table)")
    result = run_config(config, path.parent)
    out = Path(args.out) if args.out else _out_dir(config, path)
    result.save(out)
    for key, value in result.summary.items():
        print(f"{key:>18}: {value:.4f}")
    print(f"wrote {out}/report.html, summary.json, daily.csv, orders.csv, trades.csv")
    return 0


def load_config(path) -> dict:
    import tomllib

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except FileNotFoundError:
        raise GptquantError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise GptquantError(f"{path}: invalid TOML: {exc}") from None
    _check_keys(config, path)
    return config


def _check_keys(config: dict, path) -> None:
    from .broker import Rules
    from dataclasses import fields

    allowed = dict(KEYS, rules={f.name for f in fields(Rules)})
    unknown = [k for k in config if k not in allowed[""]]
    for section, value in config.items():
        if section in allowed and section and isinstance(value, dict):
            unknown += [f"{section}.{k}" for k in value if k not in allowed[section]]
    if unknown:
        raise GptquantError(f"{path}: unknown config key(s): {', '.join(unknown)}")
    for need in ("data.bars", "backtest.start", "backtest.end", "strategy.module"):
        section, key = need.split(".")
        if key not in config.get(section, {}):
            raise GptquantError(f"{path}: missing {need}")


def run_config(config: dict, base: Path, overrides: dict | None = None):
    """Run one config; `overrides` replaces strategy params (the hook for sweeps)."""
    import pandas as pd

    from ..market.prices import load_bars, momentum_panel
    from .broker import Rules

    base = Path(base)
    data, bt_cfg, strat_cfg = config["data"], config["backtest"], config["strategy"]
    start, end = pd.Timestamp(bt_cfg["start"]), pd.Timestamp(bt_cfg["end"])
    panel_cfg = config.get("panel", {})
    lookback = int(panel_cfg.get("momentum", 0))
    bars = data["bars"] if isinstance(data["bars"], pd.DataFrame) else _path(base, data["bars"])
    instruments, unit = data.get("instruments"), data.get("volume_unit", "shares")
    if "max_instruments" in data or lookback:  # needs the bars here; otherwise the run loads them once itself
        bars = load_bars(bars, instruments, start - timedelta(days=2 * lookback + 30), end, volume_unit=unit)
        if "max_instruments" in data:
            bars = _most_covered(bars, int(data["max_instruments"]), start, end)
        instruments, unit = None, "shares"
    if "path" in panel_cfg and lookback:
        raise GptquantError("[panel]: give either path or momentum, not both")
    panel = None
    if isinstance(panel_cfg.get("path"), pd.DataFrame):
        panel = panel_cfg["path"]
    elif "path" in panel_cfg:
        panel = pd.read_parquet(_path(base, panel_cfg["path"]))
    elif lookback:
        panel = momentum_panel(bars, lookback)
    if panel is not None and "columns" in panel_cfg:
        missing = [c for c in panel_cfg["columns"] if c not in panel.columns]
        if missing:
            raise GptquantError(f"[panel] columns: {', '.join(missing)} not in the panel (it has {', '.join(panel.columns)})")
        panel = panel[list(panel_cfg["columns"])]
    rules = Rules(**config.get("rules", {}))
    params = {**strat_cfg.get("params", {}), **(overrides or {})}
    module = _load_module(strat_cfg["module"], base)
    common = dict(panel=panel, capital_base=float(bt_cfg.get("capital_base", 1e6)), benchmark=data.get("benchmark", "000300.SH"),
                  benchmark_data=_path(base, data["benchmark_data"]) if "benchmark_data" in data else None,
                  checkpoints=_path(base, bt_cfg["checkpoints"]) if bt_cfg.get("checkpoints") else None)
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


def _path(base: Path, value) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _out_dir(config, path: Path) -> Path:
    if "dir" in config.get("output", {}):
        return _path(path.parent, config["output"]["dir"])
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
        path = _path(base, spec)
        if not path.is_file():
            raise GptquantError(f"strategy module {path} not found")
        name = f"gptquant_strategy_{path.stem}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        mod_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise GptquantError(f"cannot import strategy module {spec!r}: {exc}") from None


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
