"""BigQuant's names for strategies exported from BigQuant: `from gptquant.bigquant import *`.

M.trade.vN / M.bigtrader.vN / bigtrader.run run the callbacks on gptquant's A-share backtest engine over
the local data root ($GPTQUANT_DATA_ROOT: bars/ and index/); M.instruments.v2, D and DataSource read it;
T has norm, BigLogger and live_run_param; the zipline globals (order_target_percent, symbol,
schedule_function, ...) act on the running backtest. Importing this is light: backtrader loads when a
backtest runs. See the README section "Moving a BigQuant strategy".
"""
from __future__ import annotations

from ..backtest.assets import Equity, PerOrder
from . import bigtrader
from .api import (cancel_order, date_rules, get_datetime, get_open_orders, get_order, order, order_percent,  # noqa: F401
                  order_target, order_target_percent, order_target_value, order_value, record, schedule_function,
                  set_commission, set_long_only, set_slippage, sid, symbol, symbols, time_rules)
from .datasource import D, DataSource
from .modules import M, T

__all__ = ["M", "T", "D", "DataSource", "bigtrader", "PerOrder", "Equity", "symbol", "symbols", "sid", "order",
           "order_value", "order_percent", "order_target", "order_target_value", "order_target_percent",
           "get_open_orders", "cancel_order", "get_order", "set_long_only", "schedule_function", "date_rules",
           "time_rules", "set_commission", "set_slippage", "record", "get_datetime"]
