"""Backtests on backtrader under A-share rules: a BigQuant-style `trade()` and native `bt.Strategy` runs.

Nothing here imports backtrader until a run is asked for, so `import gptquant` stays light.
"""

_LAZY = {
    "trade": ("gptquant.backtest.bigquant", "trade"),
    "PerOrder": ("gptquant.backtest.assets", "PerOrder"),
    "run": ("gptquant.backtest.engine", "run"),
    "make_cerebro": ("gptquant.backtest.engine", "make_cerebro"),
    "Rules": ("gptquant.backtest.broker", "Rules"),
    "BacktestResult": ("gptquant.backtest.result", "BacktestResult"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'gptquant.backtest' has no attribute {name!r}")


__all__ = list(_LAZY)
