"""BigQuant's newer `bigtrader` namespace: run(), Market, Frequency, PerOrder, IContext, IBarData, HandleDataLib.

`run(data=df, ...)` puts `df` in `context.data`; the HandleDataLib helpers trade from its rows dated on the
current session (a `date` column). Called in handle_data (after D's close) their orders fill on D+1; in
before_trading_start they fill at D's open (then rows dated D must be known before D opens).
"""
from __future__ import annotations

import enum
import logging

import pandas as pd

from ..backtest.assets import PerOrder  # noqa: F401 (re-exported)
from ..errors import GptquantError

log = logging.getLogger("gptquant.bigquant")


class Market(str, enum.Enum):
    CN_STOCK = "CN_STOCK"
    CN_FUND = "CN_FUND"
    CN_FUTURE = "CN_FUTURE"
    CN_OPTION = "CN_OPTION"

    def __str__(self):
        return f"Market.{self.name}"


class Frequency(str, enum.Enum):
    DAILY = "daily"
    MINUTE = "1m"
    TICK = "tick"

    def __str__(self):
        return f"Frequency.{self.name}" if self is not Frequency.DAILY else "daily"


def run(market=Market.CN_STOCK, frequency=Frequency.DAILY, **kw):
    """bigtrader.run(...): the same keywords as M.bigtrader.vN; returns the result (result.render() writes HTML)."""
    from .trade import run_trade

    return run_trade(market=market, frequency=frequency, **kw)


def BigLogger(name: str = "bigquant"):  # noqa: N802 (BigQuant's name)
    """A standard logger named bigquant.<name>."""
    return logging.getLogger(f"bigquant.{name}")


class _Lazy(type):
    """IContext / IBarData: type names for annotations that import the engine only when isinstance() asks."""

    def __instancecheck__(cls, obj):
        import importlib

        module, name = cls._target
        return isinstance(obj, getattr(importlib.import_module(module), name))


class IContext(metaclass=_Lazy):
    """The `context` type (gptquant.backtest.context.Context)."""

    _target = ("gptquant.backtest.context", "Context")


class IBarData(metaclass=_Lazy):
    """The `data` type (gptquant.backtest.bardata.BarData)."""

    _target = ("gptquant.backtest.bardata", "BarData")


def _today(context, data) -> pd.DataFrame:
    df = getattr(context, "data", None)
    if not isinstance(df, pd.DataFrame) or "date" not in df.columns or "instrument" not in df.columns:
        raise GptquantError("HandleDataLib needs context.data: a DataFrame with date and instrument columns "
                            "(bigtrader.run(data=df, ...))")
    return df[pd.to_datetime(df["date"]).dt.normalize() == data.current_dt.normalize()]


def _progress(context, data, show_progress):
    if show_progress:
        stamp = data.current_dt.strftime(show_progress)
        if context.extension.get("_progress") != stamp:
            context.extension["_progress"] = stamp
            context.logger.info("%s", stamp)


class HandleDataLib:
    """Ready-made handle_data bodies (call them from your handle_data and return their result)."""

    @staticmethod
    def handle_data_weight_based(context, data, max_cash_per_instrument: float = 1.0, show_progress=None,
                                 weight_column: str = "weight"):
        """Hold exactly today's rows: each instrument at its weight (capped by max_cash_per_instrument), everything
        else sold. No row dated today: nothing changes."""
        _progress(context, data, show_progress)
        today = _today(context, data)
        if today.empty:
            return
        if weight_column not in today.columns:
            raise GptquantError(f"handle_data_weight_based: context.data has no {weight_column!r} column")
        targets = {context.symbol(c): min(float(w), max_cash_per_instrument)
                   for c, w in zip(today["instrument"], today[weight_column])}
        for asset, pos in context.portfolio.positions.items():
            if asset not in targets and pos.amount > 0 and data.can_trade(asset):
                context.order_target_percent(asset, 0)
        for asset, weight in targets.items():
            if data.can_trade(asset):
                context.order_target_percent(asset, weight)

    @staticmethod
    def handle_data_signal_based(context, data, max_hold_days=None, take_profit=None, stop_loss=None,
                                 max_open_weights_per_day=None, show_progress=None):
        """Rows dated today with signal 1 buy (at `weight`, else an equal share of the buys), -1 sell; held positions
        are also sold after max_hold_days sessions or at take_profit / stop_loss (fractions of the cost)."""
        _progress(context, data, show_progress)
        today = _today(context, data)
        entries = context.extension.setdefault("_entry_day", {})
        held = context.portfolio.positions
        for asset, pos in held.items():
            code = str(asset)
            entries.setdefault(code, context.trading_day_index)
            gain = pos.last_sale_price / pos.cost_basis - 1 if pos.cost_basis else 0.0
            old = max_hold_days is not None and context.trading_day_index - entries[code] >= max_hold_days
            if (old or (take_profit is not None and gain >= take_profit)
                    or (stop_loss is not None and gain <= -abs(stop_loss))) and data.can_trade(asset):
                context.order_target_percent(asset, 0)
        for code in [c for c in entries if c not in held]:
            del entries[code]
        if today.empty or "signal" not in today.columns:
            return
        sells = today[today["signal"] < 0]
        for c in sells["instrument"]:
            if context.symbol(c) in held and data.can_trade(c):
                context.order_target_percent(c, 0)
        buys = today[today["signal"] > 0]
        if buys.empty:
            return
        weights = buys["weight"].astype(float) if "weight" in buys.columns else pd.Series(1.0 / len(buys), index=buys.index)
        if max_open_weights_per_day is not None and weights.sum() > max_open_weights_per_day:
            weights = weights * (max_open_weights_per_day / weights.sum())
        for c, w in zip(buys["instrument"], weights):
            if context.symbol(c) not in held and data.can_trade(c):
                context.order_target_percent(c, w)
