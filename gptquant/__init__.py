"""gptquant: Chinese financial news -> GPT-2 features -> point-in-time panels -> A-share backtests.

`import gptquant` stays light: torch, transformers and backtrader load only when a function that
needs them is called.
"""
from .version import __version__  # noqa: E402,F401
from .errors import GptquantError, MissingExtra  # noqa: E402,F401

_LAZY = {
    "load_model": ("gptquant.lm.bundle_cache", "load_model"),  # exports a checkpoint first
    "Scorer": ("gptquant.runtime", "Scorer"),
    "trade": ("gptquant.backtest.bigquant", "trade"),
    "build_panel": ("gptquant.features.panel", "build_panel"),
    "normalize_code": ("gptquant.text", "normalize_code"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'gptquant' has no attribute {name!r}")


__all__ = ["GptquantError", "MissingExtra", *_LAZY]
