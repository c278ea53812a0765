"""`context` in BigQuant-style callbacks: options, portfolio, orders, scheduling and your own attributes.

Names follow zipline (BigQuant's M.trade) and bigtrader: order functions return order ids,
`get_order(id)` / `get_open_orders()` give Order snapshots, `portfolio.positions[asset]` is an empty
position for an asset not held. Order amounts must be finite numbers: NaN or inf is an error, never a
sell-everything.
"""
from __future__ import annotations

import logging
import math

import backtrader as bt
import pandas as pd

from ..errors import GptquantError
from .assets import Equity, Order, Portfolio, Position, Positions, canonical, style_of
from .schedule import scheduled

_STATUS = {bt.Order.Completed: "filled", bt.Order.Canceled: "cancelled", bt.Order.Expired: "cancelled",
           bt.Order.Margin: "rejected", bt.Order.Rejected: "rejected"}


class Context:
    """What the callbacks get as `context`. Attributes you set (and `extension`) are kept by checkpoints."""

    def __init__(self, instruments, options, panel, start_date, end_date, capital_base, style="canonical",
                 attributes=None):
        self.instruments = list(instruments)
        self.options = options
        self.panel = panel
        self.start_date, self.end_date = start_date, end_date
        self.capital_base = capital_base
        self.trading_day_index = -1
        self.extension = {}
        self._phase = "close"
        self._strat = None
        self._data = None
        self._style = style
        self._scheduled = []
        self._rebuilt = frozenset(attributes or ())
        vars(self).update(attributes or {})

    def _bind(self, strat, data):
        self._strat, self._data = strat, data
        self._feeds = {d._name: d for d in strat.datas}

    _BUILT = frozenset({"instruments", "options", "panel", "start_date", "end_date", "capital_base", "_strat", "_data",
                        "_feeds", "_style", "_scheduled", "_rebuilt", "_from_init"})

    def _kept(self, name) -> bool:
        return name not in self._BUILT and name not in self._rebuilt

    def _initialized(self) -> None:
        """After initialize: tables it loaded (context.prediction = ...read_df()) are rebuilt by every run, so a
        checkpoint need not hold them as long as they are unchanged (a changed one is saved like any attribute)."""
        self._from_init = {k: _fingerprint(v) for k, v in vars(self).items()
                           if self._kept(k) and isinstance(v, (pd.DataFrame, pd.Series))}

    def _rebuilt_unchanged(self, name) -> bool:
        fp = getattr(self, "_from_init", {}).get(name)
        return fp is not None and _fingerprint(vars(self)[name]) == fp

    def _state(self) -> dict:
        """Your attributes, extension and the day counter (what a resumed run must get back; the rest is rebuilt)."""
        return {k: v for k, v in vars(self).items() if self._kept(k) and not self._rebuilt_unchanged(k)}

    def _restore(self, state: dict) -> None:
        for k in [k for k in vars(self) if self._kept(k) and k not in getattr(self, "_from_init", {})]:
            delattr(self, k)
        vars(self).update(state)

    # -- instruments, calendar, logging
    def symbol(self, code) -> Equity:
        """The Equity for a code in any spelling ('600519', '600519.SHA', '600519.SH'); it must be in the run."""
        spelled = code.symbol if isinstance(code, Equity) else code
        style = style_of([spelled]) if isinstance(spelled, str) and "." in spelled else self._style
        asset = Equity(spelled, style)
        if asset not in self._feeds:
            raise GptquantError(f"{code!r} is not in this backtest's instruments")
        return asset

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger("gptquant.strategy")

    @property
    def trading_calendar(self):
        """The XSHG exchange calendar (exchange_calendars, the library zipline-reloaded uses)."""
        from ..market.calendar import xshg

        return xshg()

    def add_trading_days(self, day, n: int) -> pd.Timestamp:
        """The session n sessions after (n < 0: before) `day`'s session."""
        from ..market.calendar import sessions

        day = pd.Timestamp(day).normalize()
        span = pd.Timedelta(days=abs(int(n)) * 2 + 15)
        days = sessions(day - span, day + span)
        i = days.searchsorted(day) + int(n)
        if not 0 <= i < len(days):
            raise GptquantError(f"add_trading_days: no session {n} sessions from {day.date()}")
        return days[i]

    def schedule_function(self, func, date_rule=None, time_rule=None, half_days=True, calendar=None):
        """Run func(context, data) on the sessions of date_rule, in time_rule's phase (see backtest.schedule)."""
        self._scheduled.append(scheduled(func, date_rule, time_rule))

    # -- portfolio
    @property
    def portfolio(self) -> Portfolio:
        broker = self._strat.broker
        positions = Positions(style=self._style)
        for feed, pos in broker.positions.items():
            if pos.size:
                asset = Equity(feed._name, self._style)
                positions[asset] = Position(asset, int(pos.size), broker.cost_basis.get(feed, pos.price),
                                            self._data.current(feed._name, "price"),
                                            self._data.last_sale_date(feed._name), self._sellable(feed, pos.size))
        value = broker.getvalue()
        cash = broker.getcash()
        return Portfolio(cash, value, value - cash, positions, float(self.capital_base), self.start_date)

    @property
    def perf_tracker(self):
        """BigQuant's context.perf_tracker.position_tracker.positions (the same positions)."""
        positions = self.portfolio.positions
        tracker = type("PositionTracker", (), {"positions": positions})()
        return type("PerfTracker", (), {"position_tracker": tracker})()

    def get_portfolio_value(self) -> float:
        return self._strat.broker.getvalue()

    def get_account_positions(self) -> Positions:
        """bigtrader: held positions by code (Position has current_qty, avail_qty, cost_price, last_price)."""
        return self.portfolio.positions

    def get_position(self, code) -> Position:
        return self.portfolio.positions[code]

    def _sellable(self, feed, held) -> int:
        broker = self._strat.broker
        if not broker.p.rules.t_plus_1:
            return int(held)
        when, bought = broker._bought.get(feed, (None, 0))
        today = self._data.current_dt.date() if self._phase == "close" else None
        return int(held - (bought if when == today else 0))

    # -- rules changed from the strategy
    def set_commission(self, per_order=None, *, buy_cost=None, sell_cost=None, min_cost=None, tax_ratio=None):
        """Change costs from now on (BigQuant: context.set_commission(PerOrder(buy_cost, sell_cost, min_cost)))."""
        if per_order is not None:
            buy_cost, sell_cost, min_cost = per_order.buy_cost, per_order.sell_cost, per_order.min_cost
            tax_ratio = getattr(per_order, "tax_ratio", None)
        ci = self._strat.broker.getcommissioninfo(self._strat.datas[0])
        if buy_cost is not None:
            ci.p.commission = float(buy_cost)
        if sell_cost is not None:
            ci.p.sell_cost = float(sell_cost) + float(tax_ratio or 0.0)
        if min_cost is not None:
            ci.p.min_commission = float(min_cost)

    def _rules(self, **changes) -> None:
        broker = self._strat.broker
        broker.p.rules = broker.p.rules.replace(**changes)

    def set_slippage_value(self, value=0.0, slippage_type="percent"):
        """Fills move against you by `value` (a fraction of the price) from now on."""
        if str(slippage_type).lower() not in ("percent", "pct", "1"):
            raise GptquantError(f"only percent slippage is modelled, got slippage_type={slippage_type!r}")
        self._rules(slippage=_finite(value, "slippage"))

    def set_slippage(self, slippage=None, **kw):
        self.set_slippage_value(getattr(slippage, "spread", getattr(slippage, "value", 0.0)) if slippage else 0.0)

    def set_stock_t1(self, t1=1):
        """1: shares bought today cannot be sold today (A-share default); 0: they can."""
        self._rules(t_plus_1=bool(t1))

    def set_long_only(self, on_error="fail"):
        """Always in force: the A-share broker never sells more than is held."""

    # -- orders: amounts are shares; buys are sized in whole lots from the latest known close
    def order(self, asset, amount, limit_price=None, stop_price=None, style=None):
        """Buy (amount > 0) or sell (amount < 0) shares; returns the order id or None when amount is 0."""
        if limit_price is not None or stop_price is not None or style is not None:
            raise GptquantError("only market orders are supported (no limit_price/stop_price/style)")
        amount = int(_finite(amount, "order amount"))
        if amount == 0:
            return None
        feed = self._feeds[canonical(self.symbol(asset))]
        strat = self._strat
        order = strat.buy(data=feed, size=amount) if amount > 0 else strat.sell(data=feed, size=-amount)
        return order.ref

    def order_value(self, asset, value, **kw):
        return self.order(asset, self._shares(asset, _finite(value, "order value")), **kw)

    def order_percent(self, asset, percent, **kw):
        return self.order_value(asset, self._strat.broker.getvalue() * _finite(percent, "order percent"), **kw)

    def order_target(self, asset, amount, **kw):
        """Order the difference between `amount` and the position plus orders still pending for it."""
        sym = canonical(self.symbol(asset))
        feed = self._feeds[sym]
        have = self._strat.broker.getposition(feed).size + self._pending(feed)
        amount = int(_finite(amount, "target amount"))
        delta = amount - have
        if delta > 0:
            delta -= delta % self._lot()
        elif amount > 0 and delta < 0:
            delta += (-delta) % self._lot()  # partial sells stay in lots; selling to 0 may be odd
        return self.order(sym, delta, **kw)

    def order_target_value(self, asset, value, **kw):
        value = _finite(value, "target value")
        price = self._price(asset)
        if not price > 0:
            return self._no_price(asset)
        return self.order_target(asset, self._lots(value / price) if value > 0 else 0, **kw)

    def order_target_percent(self, asset, percent, **kw):
        return self.order_target_value(asset, self._strat.broker.getvalue() * _finite(percent, "target percent"), **kw)

    # -- open orders
    def get_open_orders(self, asset=None):
        """zipline: {Equity: [Order, ...]} of orders not yet finished; with an asset, that asset's list."""
        out = {}
        for o in self._strat.broker.pending:
            if o is not None and o.alive():
                out.setdefault(Equity(o.data._name, self._style), []).append(self._snapshot(o))
        return out.get(canonical(asset), []) if asset is not None else out

    def get_order(self, order_id) -> Order | None:
        """The order with this id (open ones from the broker, finished ones from the order log); None if unknown."""
        live = self._live(order_id)
        if live is not None:
            return self._snapshot(live)
        rows = [r for r in self._strat.broker.order_log if r["ref"] == order_id]
        if not rows:
            return None
        sign = 1 if rows[0]["side"] == "buy" else -1
        last = rows[-1]["status"]
        status = {"filled": "filled", "rejected": "rejected", "unfilled": "open"}.get(last, "cancelled")
        return Order(order_id, Equity(rows[0]["instrument"], self._style), sign * int(rows[0]["requested"]),
                     sign * int(sum(r["filled"] for r in rows)), status, rows[0]["created"],
                     float(sum(r["commission"] for r in rows)), reason=rows[-1]["reason"])

    def cancel_order(self, order) -> None:
        """Cancel an order (an id or an Order) that has not filled yet."""
        found = self._live(order.id if isinstance(order, Order) else order)
        if found is not None:
            broker = self._strat.broker
            broker.cancel(found)
            broker._log(found, self._data.current_dt.date(), 0, math.nan, 0.0, "cancelled", "cancelled by the strategy")

    def has_unfinished_sell_order(self, asset) -> bool:
        return self._unfinished(asset, buy=False)

    def has_unfinished_buy_order(self, asset) -> bool:
        return self._unfinished(asset, buy=True)

    def _unfinished(self, asset, buy: bool) -> bool:
        feed = self._feeds.get(canonical(asset))
        return any(o is not None and o.alive() and o.data is feed and o.isbuy() == buy for o in self._strat.broker.pending)

    def _live(self, ref):
        return next((o for o in self._strat.broker.pending if o is not None and o.alive() and o.ref == ref), None)

    def _snapshot(self, o) -> Order:
        sign = 1 if o.isbuy() else -1
        status = "open" if o.alive() else _STATUS.get(o.status, "cancelled")
        return Order(o.ref, Equity(o.data._name, self._style), sign * int(abs(o.size)), sign * int(abs(o.executed.size)),
                     status, bt.num2date(o.created.dt).date() if o.created.dt else None, float(o.executed.comm or 0.0))

    def _pending(self, feed) -> int:
        return int(sum(o.executed.remsize for o in self._strat.broker.pending
                       if o is not None and o.alive() and o.data is feed))

    def _lot(self) -> int:
        return self._strat.broker.p.rules.lot_size

    def _lots(self, shares: float) -> int:
        lot = self._lot()
        return int(math.floor(shares / lot)) * lot

    def _price(self, asset) -> float:
        return self._data.current(canonical(self.symbol(asset)), "price")

    def _shares(self, asset, value) -> int:
        price = self._price(asset)
        if not price > 0:
            self._no_price(asset)
            return 0
        return int(math.copysign(self._lots(abs(value) / price), value))

    def _no_price(self, asset):
        broker = self._strat.broker
        broker.order_log.append({
            "created": self._data.current_dt.date(), "datetime": None, "instrument": canonical(self.symbol(asset)),
            "side": None, "requested": None, "filled": 0, "price": math.nan, "commission": 0.0,
            "status": "rejected", "reason": "no known price to size the order (not listed yet)", "ref": None})
        return None


def _fingerprint(table) -> str:
    import hashlib
    import pickle

    try:
        values = pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes()
    except TypeError:  # cells holding lists or dicts
        values = pickle.dumps(table, protocol=4)
    names = repr(list(table.columns) if isinstance(table, pd.DataFrame) else table.name)
    return hashlib.sha256(values + names.encode()).hexdigest()


def _finite(x, what: str) -> float:
    """A finite number, or one clear error (a NaN target must never mean 'sell everything')."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise GptquantError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise GptquantError(f"{what} must be a finite number, got {x!r}")
    return v
