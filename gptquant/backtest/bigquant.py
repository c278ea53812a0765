"""BigQuant-style face: `trade(instruments, start_date, end_date, initialize, handle_data, ...)`.

Timing, chosen so that no callback can see the future:
- `before_trading_start(context, data)` runs before session D opens. `data.current` gives the last
  completed bar (D-1) for prices and volume, D's suspension flag and price limits (announced before
  the open) and panel row D (a panel with the default 09:30 cutoff is known then; pass
  panel_at="close" for a 15:00-cutoff panel). Orders placed here fill on D at the configured fields.
  Functions scheduled with time_rules.market_open run right after it.
- `handle_data(context, data)` runs after D closes and sees D's bar; its orders fill on D+1. Then the
  functions scheduled at market_close, then `after_trading(context, data)`.
- `handle_order(context, order)` / `handle_trade(context, transaction)` run when an order changes state / fills.
Order sizing uses the latest known close; lots, limits, T+1, volume cap and cash are applied at the fill.
"""
from __future__ import annotations

import backtrader as bt
import pandas as pd

from ..errors import GptquantError
from .assets import Equity, Order, PerOrder, Portfolio, Position, Positions, Transaction  # noqa: F401 (the face's objects)
from .bardata import BarData
from .context import Context

_CURRENT: list = []  # the context of the run in progress (zipline-style global functions act on it)


def current_context() -> Context:
    """The context of the backtest running now; an error outside a run."""
    if not _CURRENT:
        raise GptquantError("no backtest is running: order functions and symbol() work inside the callbacks")
    return _CURRENT[-1]


def trade(instruments=None, start_date=None, end_date=None, initialize=None, handle_data=None,
          before_trading_start=None, prepare=None, options_data=None, capital_base: float = 1e6,
          benchmark: str | None = "000300.SH", order_price_field_buy: str = "open",
          order_price_field_sell: str = "close", volume_limit: float | None = 0.025, commission=None, *,
          data=None, benchmark_data=None, panel: pd.DataFrame | None = None, panel_at: str = "open",
          options: dict | None = None, rules=None, volume_unit: str = "shares", data_root=None, title: str | None = None,
          checkpoints=None, after_trading=None, handle_order=None, handle_trade=None, code_style: str = "canonical",
          attributes: dict | None = None, history_days: int = 1):
    """Run callbacks over XSHG sessions in [start_date, end_date] under A-share rules; returns a BacktestResult.

    data / benchmark_data: a DataFrame, file or folder (default: $GPTQUANT_DATA_ROOT's bars/ and index/).
    commission: a rate, a PerOrder, or a dict of Rules fields. options: your parameters, readable as
    context.options (options_data is context.options["data"], as in BigQuant). checkpoints: a file that makes the
    run resumable (see gptquant.backtest.resume). code_style: how Equity.symbol spells codes ("bigquant":
    600519.SHA). attributes: context attributes set before initialize and rebuilt (not checkpointed) each run.
    history_days: sessions of bars loaded before start_date for data.history.
    """
    from .broker import Rules
    from .engine import bars_for, benchmark_returns, collect, make_cerebro, run_cerebro
    from .feeds import feature_columns

    if initialize is None or not callable(initialize):
        raise GptquantError("trade() needs an initialize(context) function")
    if start_date is None or end_date is None:
        raise GptquantError("trade() needs start_date and end_date")
    if panel_at not in ("open", "close"):
        raise GptquantError(f"panel_at must be 'open' or 'close', got {panel_at!r}")
    try:
        capital = float(capital_base)
    except (TypeError, ValueError):
        capital = float("nan")
    if not capital > 0 or capital == float("inf"):
        raise GptquantError(f"capital_base must be a positive number, got {capital_base!r}")
    base = rules or Rules()
    rules = base.replace(order_price_field_buy=order_price_field_buy, order_price_field_sell=order_price_field_sell,
                         volume_limit=volume_limit, **_commission_rules(commission))
    bars = bars_for(data, instruments, start_date, end_date, volume_unit=volume_unit, root=data_root,
                    warmup=max(1, int(history_days)))
    universe = sorted(bars["instrument"].unique())
    ctx = Context(universe, {**(options or {}), "data": options_data}, panel, pd.Timestamp(start_date),
                  pd.Timestamp(end_date), capital_base, code_style, attributes)
    if prepare is not None:
        prepare(ctx)
    key = None
    if checkpoints is not None:
        from .runkey import run_key, source_of

        key = run_key(face="bigquant", strategy=source_of(initialize), options=ctx.options, rules=rules,
                      capital_base=float(capital_base), start=str(pd.Timestamp(start_date).date()), panel_at=panel_at,
                      panel=feature_columns(panel), prepare=prepare is not None, style=code_style,
                      history_days=int(history_days))
    cerebro = make_cerebro(bars, panel, None, end_date, capital_base=capital_base, rules=rules, cheat_on_open=True,
                           record_from=start_date, panel_lines=False,
                           checkpoints=checkpoints, key=key, strategy_modules=(getattr(initialize, "__module__", ""),))
    try:
        strat = run_cerebro(cerebro, _Callbacks, ctx=ctx, initialize=initialize, handle_data=handle_data,
                            before_trading_start=before_trading_start, panel_at=panel_at, after_trading=after_trading,
                            handle_order=handle_order, handle_trade=handle_trade)
    finally:  # also when a callback raised: the global order functions must not act on a finished run
        _CURRENT[:] = [c for c in _CURRENT if c is not ctx]
    bench = benchmark_returns(benchmark, benchmark_data, strat, data_root)
    return collect(strat, capital_base, bench, benchmark, title or getattr(initialize, "__module__", "trade"))


def _commission_rules(commission) -> dict:
    if commission is None:
        return {}
    if isinstance(commission, PerOrder):
        return {"commission": commission.buy_cost, "sell_cost": commission.sell_cost + (commission.tax_ratio or 0.0),
                "min_commission": commission.min_cost}
    if isinstance(commission, (int, float)):
        return {"commission": float(commission)}
    if isinstance(commission, dict):
        return dict(commission)
    raise GptquantError(f"commission must be a rate, a PerOrder or a dict, got {commission!r}")


class _Callbacks(bt.Strategy):
    """Calls the user's functions: before_trading_start before each open, handle_data after each close."""

    params = (("ctx", None), ("initialize", None), ("handle_data", None), ("before_trading_start", None),
              ("panel_at", "open"), ("after_trading", None), ("handle_order", None), ("handle_trade", None))

    def start(self):
        ctx = self.p.ctx
        ctx._bind(self, BarData(self, ctx, self.p.panel_at))
        _CURRENT.append(ctx)
        self.p.initialize(ctx)
        ctx._initialized()

    def _active(self):
        return pd.Timestamp(self.data.datetime.date(0)) >= self.p.ctx.start_date  # the feeds, not the strategy clock, are at D in next_open

    def _run_scheduled(self, phase):
        ctx = self.p.ctx
        day = ctx._data.current_dt
        for s in list(ctx._scheduled):
            if s.time_rule.phase == phase and s.date_rule.matches(day):
                s.func(ctx, ctx._data)

    def next_open(self):
        if not self._active():
            return
        ctx = self.p.ctx
        ctx.trading_day_index += 1
        ctx._phase = "open"
        if self.p.before_trading_start is not None:
            self.p.before_trading_start(ctx, ctx._data)
        self._run_scheduled("open")

    def next(self):
        if not self._active():
            return
        ctx = self.p.ctx
        ctx._phase = "close"
        if self.p.handle_data is not None:
            self.p.handle_data(ctx, ctx._data)
        self._run_scheduled("close")
        if self.p.after_trading is not None:
            self.p.after_trading(ctx, ctx._data)

    def notify_order(self, order):
        ctx = self.p.ctx
        if self.p.handle_trade is not None and order.status in (bt.Order.Partial, bt.Order.Completed) \
                and order.executed.exbits:
            bit = order.executed.exbits[-1]
            size = int(bit.size)
            self.p.handle_trade(ctx, Transaction(Equity(order.data._name, ctx._style), size, float(bit.price),
                                                 bt.num2date(bit.dt).date(), order.ref,
                                                 float(bit.closedcomm + bit.openedcomm)))
        if self.p.handle_order is not None:
            self.p.handle_order(ctx, ctx._snapshot(order))
