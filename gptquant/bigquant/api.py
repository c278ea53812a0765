"""zipline's global functions as BigQuant strategies call them (without `context.`), bound to the running backtest.

Outside a run they raise one clear error. date_rules / time_rules are the engine's own (gptquant.backtest.schedule).
"""
from __future__ import annotations

from ..backtest.schedule import date_rules, time_rules  # noqa: F401 (re-exported)

NAMES = ("symbol", "symbols", "sid", "order", "order_value", "order_percent", "order_target", "order_target_value",
         "order_target_percent", "get_open_orders", "cancel_order", "get_order", "set_long_only", "schedule_function",
         "set_commission", "set_slippage", "record", "get_datetime")


def _context():
    from ..backtest.bigquant import current_context  # a run is in progress, so backtrader is already loaded

    return current_context()


def _bound(name):
    def call(*args, **kw):
        return getattr(_context(), name)(*args, **kw)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"context.{name}(...) of the running backtest."
    return call


for _name in ("symbol", "order", "order_value", "order_percent", "order_target", "order_target_value",
              "order_target_percent", "get_open_orders", "cancel_order", "get_order", "set_long_only",
              "schedule_function", "set_commission", "set_slippage"):
    globals()[_name] = _bound(_name)


def symbols(*codes):
    """Equities for several codes."""
    return [_context().symbol(c) for c in codes]


def sid(number):
    """zipline's sid(n): the run's instrument whose 6 digits are n."""
    for code in _context().instruments:
        if int(code[:6]) == int(number):
            return _context().symbol(code)
    from ..errors import GptquantError

    raise GptquantError(f"sid({number}): no instrument with that number in this backtest")


def record(**values):
    """zipline's record(): the values are kept in context.extension['recorded'][date]."""
    ctx = _context()
    ctx.extension.setdefault("recorded", {})[str(ctx._data.current_dt.date())] = dict(values)


def get_datetime(tz=None):
    return _context()._data.current_dt
