"""BigQuant-style face: `trade(instruments, start_date, end_date, initialize, handle_data, ...)`.

Timing, chosen so that no callback can see the future:
- `before_trading_start(context, data)` runs before session D opens. `data.current` gives the last
  completed bar (D-1) for prices and volume, D's suspension flag and price limits (announced before
  the open) and panel row D (a panel with the default 09:30 cutoff is known then; pass
  panel_at="close" for a 15:00-cutoff panel). Orders placed here fill on D at the configured fields.
- `handle_data(context, data)` runs after D closes and sees D's bar; its orders fill on D+1.
Order sizing uses the latest known close; lots, limits, T+1, volume cap and cash are applied at the fill.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import backtrader as bt
import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..text import normalize_code

PRICE_FIELDS = ("open", "high", "low", "close", "volume", "price")
PRE_OPEN_FIELDS = ("suspended", "up_limit", "down_limit", "pre_close")  # known before the session opens


@dataclass(frozen=True)
class PerOrder:
    """BigQuant's commission model: buy_cost / sell_cost rates (sell_cost includes stamp duty), min_cost per order."""

    buy_cost: float = 0.0003
    sell_cost: float = 0.0013
    min_cost: float = 5.0


def trade(instruments=None, start_date=None, end_date=None, initialize=None, handle_data=None,
          before_trading_start=None, prepare=None, options_data=None, capital_base: float = 1e6,
          benchmark: str | None = "000300.SH", order_price_field_buy: str = "open",
          order_price_field_sell: str = "close", volume_limit: float | None = 0.025, commission=None, *,
          data=None, benchmark_data=None, panel: pd.DataFrame | None = None, panel_at: str = "open",
          options: dict | None = None, rules=None, volume_unit: str = "shares", data_root=None, title: str | None = None,
          checkpoints=None):
    """Run callbacks over XSHG sessions in [start_date, end_date] under A-share rules; returns a BacktestResult.

    data / benchmark_data: a DataFrame, file or folder (default: $GPTQUANT_DATA_ROOT's bars/ and index/).
    commission: a rate, a PerOrder, or a dict of Rules fields. options: your parameters, readable as
    context.options (options_data is context.options["data"], as in BigQuant). checkpoints: a file that makes the run resumable (see gptquant.backtest.resume).
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
    base = rules or Rules()
    rules = base.replace(order_price_field_buy=order_price_field_buy, order_price_field_sell=order_price_field_sell,
                         volume_limit=volume_limit, **_commission_rules(commission))
    bars = bars_for(data, instruments, start_date, end_date, volume_unit=volume_unit, root=data_root)
    universe = sorted(bars["instrument"].unique())
    ctx = Context(universe, {**(options or {}), "data": options_data}, panel, pd.Timestamp(start_date),
                  pd.Timestamp(end_date), capital_base)
    if prepare is not None:
        prepare(ctx)
    key = None
    if checkpoints is not None:
        from .resume import run_key, source_of

        key = run_key(face="bigquant", strategy=source_of(initialize), options=ctx.options, rules=rules,
                      capital_base=float(capital_base), start=str(pd.Timestamp(start_date).date()), panel_at=panel_at,
                      panel=feature_columns(panel), prepare=prepare is not None)
    cerebro = make_cerebro(bars, panel, None, end_date, capital_base=capital_base, rules=rules, cheat_on_open=True,
                           record_from=start_date, panel_lines=False,
                           checkpoints=checkpoints, key=key, strategy_modules=(getattr(initialize, "__module__", ""),))
    strat = run_cerebro(cerebro, _Callbacks, ctx=ctx, initialize=initialize, handle_data=handle_data,
                        before_trading_start=before_trading_start, panel_at=panel_at)
    bench = benchmark_returns(benchmark, benchmark_data, strat, data_root)
    return collect(strat, capital_base, bench, benchmark, title or getattr(initialize, "__module__", "trade"))


def _commission_rules(commission) -> dict:
    if commission is None:
        return {}
    if isinstance(commission, PerOrder):
        return {"commission": commission.buy_cost, "sell_cost": commission.sell_cost,
                "min_commission": commission.min_cost}
    if isinstance(commission, (int, float)):
        return {"commission": float(commission)}
    if isinstance(commission, dict):
        return dict(commission)
    raise GptquantError(f"commission must be a rate, a PerOrder or a dict, got {commission!r}")


class _Callbacks(bt.Strategy):
    """Calls the user's functions: before_trading_start before each open, handle_data after each close."""

    params = (("ctx", None), ("initialize", None), ("handle_data", None), ("before_trading_start", None),
              ("panel_at", "open"))

    def start(self):
        ctx = self.p.ctx
        ctx._bind(self, BarData(self, ctx, self.p.panel_at))
        self.p.initialize(ctx)

    def _active(self):
        return pd.Timestamp(self.data.datetime.date(0)) >= self.p.ctx.start_date  # the feeds, not the strategy clock, are at D in next_open

    def next_open(self):
        if not self._active():
            return
        ctx = self.p.ctx
        ctx.trading_day_index += 1
        ctx._phase = "open"
        if self.p.before_trading_start is not None:
            self.p.before_trading_start(ctx, ctx._data)

    def next(self):
        if not self._active():
            return
        ctx = self.p.ctx
        ctx._phase = "close"
        if self.p.handle_data is not None:
            self.p.handle_data(ctx, ctx._data)


@dataclass
class Position:
    sid: str
    amount: int
    cost_basis: float
    last_sale_price: float


@dataclass
class Portfolio:
    cash: float
    portfolio_value: float
    positions_value: float
    positions: dict
    starting_cash: float

    @property
    def returns(self) -> float:
        return self.portfolio_value / self.starting_cash - 1

    @property
    def pnl(self) -> float:
        return self.portfolio_value - self.starting_cash


class Context:
    """What the callbacks get as `context`: options, portfolio, order functions and your own attributes."""

    def __init__(self, instruments, options, panel, start_date, end_date, capital_base):
        self.instruments = list(instruments)
        self.options = options
        self.panel = panel
        self.start_date, self.end_date = start_date, end_date
        self.capital_base = capital_base
        self.trading_day_index = -1
        self._phase = "close"
        self._strat = None
        self._data = None

    def _bind(self, strat, data):
        self._strat, self._data = strat, data
        self._feeds = {d._name: d for d in strat.datas}

    _BUILT = frozenset({"instruments", "options", "panel", "start_date", "end_date", "capital_base", "_strat", "_data",
                        "_feeds"})

    def _state(self) -> dict:
        """Your attributes and the day counter (what a resumed run must get back; the rest is rebuilt)."""
        return {k: v for k, v in vars(self).items() if k not in self._BUILT}

    def _restore(self, state: dict) -> None:
        for k in [k for k in vars(self) if k not in self._BUILT]:
            delattr(self, k)
        vars(self).update(state)

    # -- instruments and portfolio
    def symbol(self, code) -> str:
        """Canonical code of an instrument in the universe ('600519' -> '600519.SH')."""
        try:
            sym = normalize_code(code)
        except ValueError as exc:
            raise GptquantError(str(exc)) from None
        if sym not in self._feeds:
            raise GptquantError(f"{code!r} is not in this backtest's instruments")
        return sym

    @property
    def portfolio(self) -> Portfolio:
        broker = self._strat.broker
        positions = {}
        for feed, pos in broker.positions.items():
            if pos.size:
                positions[feed._name] = Position(feed._name, int(pos.size), pos.price,
                                                 self._data.current(feed._name, "price"))
        value = broker.getvalue()
        cash = broker.getcash()
        return Portfolio(cash, value, value - cash, positions, float(self.capital_base))

    def set_commission(self, per_order: PerOrder | None = None, *, buy_cost=None, sell_cost=None, min_cost=None):
        """Change costs from now on (BigQuant: context.set_commission(PerOrder(buy_cost, sell_cost, min_cost)))."""
        if per_order is not None:
            buy_cost, sell_cost, min_cost = per_order.buy_cost, per_order.sell_cost, per_order.min_cost
        ci = self._strat.broker.getcommissioninfo(self._strat.datas[0])
        if buy_cost is not None:
            ci.p.commission = float(buy_cost)
        if sell_cost is not None:
            ci.p.sell_cost = float(sell_cost)
        if min_cost is not None:
            ci.p.min_commission = float(min_cost)

    # -- orders: amounts are shares; buys are sized in whole lots from the latest known close
    def order(self, asset, amount):
        """Buy (amount > 0) or sell (amount < 0) shares; returns the order id or None when amount is 0."""
        amount = int(amount)
        if amount == 0:
            return None
        feed = self._feeds[self.symbol(asset)]
        strat = self._strat
        order = strat.buy(data=feed, size=amount) if amount > 0 else strat.sell(data=feed, size=-amount)
        return order.ref

    def order_value(self, asset, value):
        return self.order(asset, self._shares(asset, value))

    def order_percent(self, asset, percent):
        return self.order_value(asset, self._strat.broker.getvalue() * percent)

    def order_target(self, asset, amount):
        """Order the difference between `amount` and the position plus orders still pending for it."""
        sym = self.symbol(asset)
        feed = self._feeds[sym]
        have = self._strat.broker.getposition(feed).size + self._pending(feed)
        amount = int(amount)
        delta = amount - have
        if delta > 0:
            delta -= delta % self._lot()
        elif amount > 0 and delta < 0:
            delta += (-delta) % self._lot()  # partial sells stay in lots; selling to 0 may be odd
        return self.order(sym, delta)

    def order_target_value(self, asset, value):
        price = self._price(asset)
        if not price > 0:
            return self._no_price(asset)
        return self.order_target(asset, self._lots(value / price) if value > 0 else 0)

    def order_target_percent(self, asset, percent):
        return self.order_target_value(asset, self._strat.broker.getvalue() * percent)

    def get_open_orders(self) -> dict:
        """Pending orders by instrument: {code: [remaining signed shares, ...]}."""
        out = {}
        for o in self._strat.broker.pending:
            if o is not None and o.alive():
                out.setdefault(o.data._name, []).append(o.executed.remsize)
        return out

    def _pending(self, feed) -> int:
        return int(sum(o.executed.remsize for o in self._strat.broker.pending
                       if o is not None and o.alive() and o.data is feed))

    def _lot(self) -> int:
        return self._strat.broker.p.rules.lot_size

    def _lots(self, shares: float) -> int:
        lot = self._lot()
        return int(math.floor(shares / lot)) * lot

    def _price(self, asset) -> float:
        return self._data.current(self.symbol(asset), "price")

    def _shares(self, asset, value) -> int:
        price = self._price(asset)
        if not price > 0:
            self._no_price(asset)
            return 0
        return int(math.copysign(self._lots(abs(value) / price), value))

    def _no_price(self, asset):
        broker = self._strat.broker
        broker.order_log.append({
            "created": self._data.current_dt.date(), "datetime": None, "instrument": self.symbol(asset),
            "side": None, "requested": None, "filled": 0, "price": math.nan, "commission": 0.0,
            "status": "rejected", "reason": "no known price to size the order (not listed yet)", "ref": None})
        return None


class BarData:
    """`data` in the callbacks: current(), can_trade(), history(), current_dt — never beyond what is known."""

    def __init__(self, strat, ctx, panel_at):
        self._strat, self._ctx, self._panel_at = strat, ctx, panel_at
        self._feeds = {d._name: d for d in strat.datas}
        self._column = {d._name: j for j, d in enumerate(strat.datas)}
        self._panel = strat.env.panel_arrays  # feature -> session x instrument, on the feeds' grid
        self._features = list(self._panel)

    @property
    def current_dt(self) -> pd.Timestamp:
        return pd.Timestamp(self._strat.data.datetime.date(0))

    def _ago(self, field) -> int:
        if self._ctx._phase == "close" or field in PRE_OPEN_FIELDS:
            return 0
        if field in self._features:
            return 0 if self._panel_at == "open" else -1
        return -1

    def _line(self, field):
        name = "close" if field == "price" else field
        if name not in (*PRICE_FIELDS, *PRE_OPEN_FIELDS, *self._features):
            raise GptquantError(f"unknown field {field!r}; fields: {', '.join((*PRICE_FIELDS, *PRE_OPEN_FIELDS, *self._features))}")
        return name

    def _feed(self, asset):
        try:
            return self._feeds[normalize_code(asset)]
        except (ValueError, KeyError):
            raise GptquantError(f"{asset!r} is not in this backtest's instruments") from None

    def _value(self, asset, field) -> float:
        feed = self._feed(asset)
        ago = self._ago(field)
        if len(feed) + ago < 1:  # nothing known yet (line[-1] on the first bar would wrap around)
            return math.nan
        if field in self._panel:
            return float(self._panel[field][len(feed) - 1 + ago, self._column[feed._name]])
        return getattr(feed.lines, self._line(field))[ago]

    def current(self, assets, fields):
        """A float for one asset and field; a Series over assets or fields; a DataFrame for both lists."""
        one_asset, one_field = isinstance(assets, str), isinstance(fields, str)
        if one_asset and one_field:
            return self._value(assets, fields)
        assets = [assets] if one_asset else list(assets)
        fields = [fields] if one_field else list(fields)
        frame = pd.DataFrame({f: [self._value(a, f) for a in assets] for f in fields},
                             index=[normalize_code(a) for a in assets])
        if one_field:
            return frame[fields[0]]
        return frame.iloc[0] if one_asset else frame

    def can_trade(self, asset) -> bool:
        """Listed and not suspended this session (price limits are judged at the fill)."""
        feed = self._feed(asset)
        return not feed.suspended[0] and feed.close[0] > 0

    def history(self, assets, fields, bar_count: int, frequency: str = "1d"):
        """The last bar_count completed sessions (ending D in handle_data, D-1 before the open)."""
        if frequency != "1d":
            raise GptquantError(f"only daily history is available, got frequency={frequency!r}")
        end_ago = 0 if self._ctx._phase == "close" else -1
        one_asset, one_field = isinstance(assets, str), isinstance(fields, str)
        assets = [assets] if one_asset else list(assets)
        fields = [fields] if one_field else list(fields)
        cols = {}
        index = None
        for a in assets:
            feed = self._feed(a)
            stop = feed.lines.datetime.idx + end_ago + 1
            begin = max(0, stop - int(bar_count))
            if index is None:
                days = np.asarray(feed.lines.datetime.array[begin:max(stop, begin)], dtype=np.int64) - 719163
                index = pd.DatetimeIndex(pd.to_datetime(days, unit="D"), name="datetime")
            for f in fields:
                if f in self._panel:
                    values = self._panel[f][begin:max(stop, begin), self._column[feed._name]]
                else:
                    values = getattr(feed.lines, self._line(f)).array[begin:max(stop, begin)]
                cols[(f, normalize_code(a))] = np.asarray(values, dtype=float)
        frame = pd.DataFrame(cols, index=index)
        if one_asset and one_field:
            return frame.iloc[:, 0].rename(normalize_code(assets[0]))
        if one_field:
            return frame[fields[0]]
        if one_asset:
            return frame.xs(normalize_code(assets[0]), axis=1, level=1)
        return frame
