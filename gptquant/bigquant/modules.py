"""BigQuant's module namespace M (trade, bigtrader, instruments in any version vN) and the T helpers.

Other M modules (feature extraction, StockRanker training and prediction, joins...) are BigQuant's DAG: they
are not run here. Asking for one is an error that says what to do instead: compute the table yourself (or
with gptquant's panel) and pass it with DataSource.write_df(df).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import GptquantError
from .bigtrader import BigLogger
from .datasource import D, DataSource


@dataclass
class ModuleOutput:
    """What a BigQuant module returns: its output as `.data`."""

    data: DataSource


def instruments_v2(instruments=None, start_date=None, end_date=None, market="CN_STOCK_A", **kw) -> ModuleOutput:
    """M.instruments.v2: `.data.read()` is {"instruments": [...], "start_date": ..., "end_date": ...}; no instruments
    (None, "" or []) means every stock of the data root with a bar in the range."""
    if market != "CN_STOCK_A":
        raise GptquantError(f"M.instruments: only market='CN_STOCK_A' is in the data root, got {market!r}")
    if isinstance(instruments, str):
        instruments = [c for c in re.split(r"[\s,;]+", instruments) if c]
    codes = list(instruments) if instruments else D.instruments(start_date, end_date, market)
    return ModuleOutput(DataSource.write_pickle({"instruments": codes, "start_date": start_date, "end_date": end_date}))


def trade_vn(**kw):
    """M.trade.vN(...): see gptquant.bigquant.trade (all keywords by name, as BigQuant exports them)."""
    from .trade import run_trade

    return run_trade(**kw)


def bigtrader_vn(**kw):
    from .bigtrader import run

    return run(**kw)


class _Versions:
    """M.<name>.vN for any N: one current implementation."""

    def __init__(self, name, fn):
        self._name, self._fn = name, fn

    def __getattr__(self, attr):
        if re.fullmatch(r"v\d+", attr):
            return self._fn
        raise AttributeError(f"M.{self._name}.{attr}: versions are written vN (M.{self._name}.v4)")


class _M:
    trade = _Versions("trade", trade_vn)
    bigtrader = _Versions("bigtrader", bigtrader_vn)
    instruments = _Versions("instruments", instruments_v2)

    def __getattr__(self, name):
        raise AttributeError(f"M.{name} is a BigQuant DAG module that gptquant does not run: build its output table "
                             "yourself (e.g. gptquant's news panel) and pass it with DataSource.write_df(df)")


M = _M()


def norm(values) -> list[float]:
    """T.norm: values scaled to sum to 1 (BigQuant's weights helper)."""
    values = [float(v) for v in values]
    total = sum(values)
    if not total or total != total:
        raise GptquantError(f"T.norm: the values sum to {total}, cannot normalise")
    return [v / total for v in values]


class T:
    """BigQuant's T helpers that strategies call in their trade callbacks."""

    norm = staticmethod(norm)
    BigLogger = staticmethod(BigLogger)

    @staticmethod
    def live_run_param(name, default=None):
        """Live-trading parameter: a backtest always gets the default."""
        return default
