"""A-share exchange rules on top of backtrader's BackBroker.

backtrader fills market orders at the next bar's open with no notion of lots, T+1, price limits or
suspensions. This broker checks each order at its fill bar, fills it at the configured price field
(open or close), shrinks it to what the rules allow (lots, volume cap, cash, sellable shares) and
refuses it otherwise. Every order ends in `order_log` with what was asked, what was filled and why.
An order the rules refuse is rejected for the day, not carried over (BigQuant does the same).

Cash: by default (cash_policy "a_share") sells fill before buys at each price field and a buy cash cannot
cover is cut to the lots it affords, judged at the fill. cash_policy "backtrader" is backtrader's own
BackBroker: orders are checked against cash when submitted (at the creation price), fill in the order
submitted and a buy cash cannot cover is rejected whole; with the other rules off the two engines then
place and fill the same orders (tests/test_backtest_parity.py).
"""
from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from datetime import date

import backtrader as bt

from ..errors import GptquantError

# (first day, rate): 0.1 % on sells until 2023-08-27, 0.05 % from 2023-08-28
STAMP_DUTY = ((date(1990, 1, 1), 0.001), (date(2023, 8, 28), 0.0005))
PRICE_FIELDS = ("open", "close")
CASH_POLICIES = ("a_share", "backtrader")
UNFILLED = ("cancel", "keep_partial", "keep")


@dataclass(frozen=True)
class Rules:
    """Exchange rules with A-share defaults; every one is a parameter."""

    order_price_field_buy: str = "open"
    order_price_field_sell: str = "close"
    volume_limit: float | None = 0.025  # share of the bar's volume one order may take; None or 0 = no cap
    lot_size: int = 100
    t_plus_1: bool = True
    price_limits: bool = True
    limit_tolerance: float = 0.005  # half a tick; use 0.01 for forward-adjusted prices
    commission: float = 0.0003
    min_commission: float = 5.0
    stamp_duty: tuple = STAMP_DUTY
    sell_cost: float | None = None  # BigQuant PerOrder sell_cost: replaces commission + stamp duty on sells
    cash_policy: str = "a_share"  # or "backtrader": submission-time cash check, submission order, no cut-down
    slippage: float = 0.0  # fills move against the order by this fraction of the price
    # what happens to an order the rules did not fill in full: "cancel" (the rest is cancelled, gptquant's default);
    # "keep_partial" (what the volume cap left stays open for the next sessions, zipline/BigQuant); "keep" (also orders
    # refused because the stock cannot trade, suspended or at its limit: BigQuant's auto_cancel_non_tradable_orders=False)
    unfilled: str = "cancel"

    def __post_init__(self):
        for name in ("order_price_field_buy", "order_price_field_sell"):
            if getattr(self, name) not in PRICE_FIELDS:
                raise GptquantError(f"{name} must be 'open' or 'close', got {getattr(self, name)!r}")
        if self.cash_policy not in CASH_POLICIES:
            raise GptquantError(f"cash_policy must be one of {', '.join(CASH_POLICIES)}, got {self.cash_policy!r}")
        if self.volume_limit == 0:
            object.__setattr__(self, "volume_limit", None)  # BigQuant's volume_limit=0: no cap
        if self.volume_limit is not None and not 0 < self.volume_limit <= 1:
            raise GptquantError(f"volume_limit must be in [0, 1] or None (0 and None: no cap), got {self.volume_limit}")
        if self.unfilled not in UNFILLED:
            raise GptquantError(f"unfilled must be one of {', '.join(UNFILLED)}, got {self.unfilled!r}")
        if not 0 <= self.slippage < 0.1:
            raise GptquantError(f"slippage must be a fraction in [0, 0.1), got {self.slippage}")
        if self.lot_size < 1:
            raise GptquantError(f"lot_size must be >= 1, got {self.lot_size}")
        if self.commission < 0 or self.min_commission < 0:
            raise GptquantError("commission and min_commission must be >= 0")
        try:
            schedule = tuple(sorted((_to_date(d), float(r)) for d, r in self.stamp_duty))
        except (TypeError, ValueError) as exc:
            raise GptquantError(f"stamp_duty must be (date, rate) pairs: {exc}") from None
        object.__setattr__(self, "stamp_duty", schedule)

    def replace(self, **changes) -> "Rules":
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise GptquantError(f"unknown rule(s): {sorted(unknown)}; known: {sorted(asdict(self))}")
        return Rules(**{**asdict(self), **changes})


def _to_date(value) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


class AShareCommission(bt.CommInfoBase):
    """Commission with a per-order minimum plus sell-side stamp duty at the rate in force on the fill day."""

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),
        ("commission", 0.0003),
        ("min_commission", 5.0),
        ("stamp_duty", STAMP_DUTY),
        ("sell_cost", None),
    )

    today: date = date.min  # set by the broker before each fill

    def stamp_rate(self, day: date) -> float:
        rate = 0.0
        for start, r in self.p.stamp_duty:
            if day >= start:
                rate = r
        return rate

    def _getcommission(self, size, price, pseudoexec):
        if not size:
            return 0.0
        value = abs(size) * price
        if size < 0 and self.p.sell_cost is not None:
            return max(value * self.p.sell_cost, self.p.min_commission)
        fee = max(value * self.p.commission, self.p.min_commission)
        if size < 0:
            fee += value * self.stamp_rate(self.today)
        return fee


class AShareBroker(bt.BackBroker):
    """BackBroker that applies `Rules` at each order's fill bar and logs every order's outcome."""

    params = (("rules", Rules()),)

    def __init__(self):
        super().__init__()
        self._a_share_cash = self.p.rules.cash_policy == "a_share"
        self.p.checksubmit = not self._a_share_cash  # a_share: cash is checked at the fill, against the fill price
        self.p.filler = lambda order, price, ago: self._fill_size
        self._fill_size = 0
        self.order_log: list[dict] = []
        self.traded_value: dict = defaultdict(float)  # session -> value bought + sold
        self._bought: dict = {}  # data -> (session, shares bought that session)
        self.cost_basis: dict = {}  # data -> zipline's cost basis: average fill price plus the fees paid, per share

    def getposition(self, data):
        # BackBroker's defaultdict would add an empty position per feed looked at, and its valuation
        # multiplies every stored position by close[0], which is NaN before an instrument lists
        pos = self.positions.get(data)
        return pos if pos is not None else bt.Position()

    # -- ordering: at one bar, open fills happen before close fills, and sells free cash before buys
    def _sequence(self, order):
        rules = self.p.rules
        field = rules.order_price_field_buy if order.isbuy() else rules.order_price_field_sell
        return (PRICE_FIELDS.index(field), order.isbuy())

    def next(self):
        if self._a_share_cash and len(self.pending) > 1:
            self.pending = deque(sorted(self.pending, key=self._sequence))
        super().next()
        self._forget_finished()

    def _forget_finished(self):
        """BackBroker keeps parent/child and OCO bookkeeping of every order forever (a refused order's is never
        cleared). Only market orders exist here, so a finished order's entries go: memory and checkpoints stay
        small over long runs."""
        for ref in [r for r, orders in self._pchildren.items() if not any(o.alive() for o in orders)]:
            del self._pchildren[ref]
        for table in (self._ocol, self._ocos):
            for ref in [r for r in table if r not in self._pchildren]:
                del table[ref]

    def check_submitted(self):
        """cash_policy "backtrader": an order refused at submission for cash is logged like any other."""
        batch = [o for o in self.submitted]
        super().check_submitted()
        for order in batch:
            if order.status == bt.Order.Margin:
                self._log(order, bt.num2date(order.created.dt).date(), 0, math.nan, 0.0, "rejected",
                          "insufficient cash at submission")

    # -- the rules
    def _try_exec(self, order):
        rules = self.p.rules
        data = order.data
        day = bt.num2date(data.datetime[0]).date()
        if order.exectype != bt.Order.Market:
            return self._refuse(order, day, "only market orders are supported by the A-share broker")
        buy = order.isbuy()
        field = rules.order_price_field_buy if buy else rules.order_price_field_sell
        price = getattr(data.lines, field)[0]
        if data.suspended[0] or not price > 0:
            return self._refuse(order, day, "suspended: no bar this session" if price > 0 else "not listed yet",
                                untradable=price > 0)
        if rules.price_limits:
            if buy and price >= data.up_limit[0] - rules.limit_tolerance:
                return self._refuse(order, day, f"limit up: cannot buy at {price:g} (limit {data.up_limit[0]:g})",
                                    untradable=True)
            if not buy and price <= data.down_limit[0] + rules.limit_tolerance:
                return self._refuse(order, day, f"limit down: cannot sell at {price:g} (limit {data.down_limit[0]:g})",
                                    untradable=True)
        if rules.slippage:
            price = price * (1 + rules.slippage if buy else 1 - rules.slippage)

        want = abs(order.executed.remsize)
        lot = rules.lot_size
        held = self.getposition(data).size
        cap = math.floor(data.volume[0] * rules.volume_limit) if rules.volume_limit else math.inf
        notes = []
        if buy:
            size = min(want, cap)
            capped = size < want
            if size < want:
                notes.append(f"volume_limit: at most {int(cap)} shares ({rules.volume_limit:g} of {data.volume[0]:g})")
            if size % lot:
                notes.append(f"lot: {int(size)} rounded down to a multiple of {lot}")
                size -= size % lot
            affordable = self._affordable(size, price, data, day) if self._a_share_cash else size
            if affordable < size:
                capped = False  # cash, not volume, is what is missing: the rest is cancelled
                notes.append(f"cash: {self.cash:.2f} buys {int(affordable)} of {int(size)} shares")
                size = affordable
        else:
            if held <= 0:
                return self._refuse(order, day, "no position to sell (no short selling)")
            sellable = held
            if rules.t_plus_1:
                when, bought = self._bought.get(data, (None, 0))
                sellable = held - (bought if when == day else 0)
                if sellable <= 0:
                    return self._refuse(order, day, f"T+1: the {int(held)} shares held were bought today")
                if want > sellable:
                    notes.append(f"T+1: only {int(sellable)} of {int(held)} shares are sellable today")
            if want > held:
                notes.append(f"no short selling: {int(want)} asked, {int(held)} held")
            size = min(want, sellable, cap)
            capped = cap < min(want, sellable)
            if cap < min(want, sellable):
                notes.append(f"volume_limit: at most {int(cap)} shares ({rules.volume_limit:g} of {data.volume[0]:g})")
            if size < held and size % lot:  # odd lots may only be sold to close the whole position
                notes.append(f"lot: {int(size)} rounded down to a multiple of {lot}")
                size -= size % lot
        if size <= 0:
            return self._refuse(order, day, "; ".join(notes) or "nothing to trade")

        self.getcommissioninfo(data).today = day
        self._fill_size = size
        comm_before = order.executed.comm or 0.0
        self._execute(order, ago=0, price=price)
        if order.status == bt.Order.Margin:
            return self._log(order, day, 0, price, 0.0, "rejected", "insufficient cash")
        fee = order.executed.comm - comm_before  # this fill's (an order kept open fills over several sessions)
        self._update_cost(data, held, size if buy else -size, price, fee)
        keep = capped and rules.unfilled != "cancel" and order.alive()
        if keep:  # zipline/BigQuant: what the volume cap left stays open for the next sessions
            notes.append(f"{int(abs(order.executed.remsize))} shares stay open")
        elif order.alive():  # what the rules did not allow is cancelled, not carried to tomorrow
            order.cancel()
            self.notify(order)
        if buy:
            when, bought = self._bought.get(data, (None, 0))
            self._bought[data] = (day, (bought if when == day else 0) + size)
        self.traded_value[day] += size * price
        status = "filled" if size == want else "partial"
        self._log(order, day, size, price, fee, status, "; ".join(notes))

    def _update_cost(self, data, held, delta, price, fee):
        """zipline's cost basis: a buy averages its price in, every fee is spread over the shares still held."""
        now = held + delta
        if now <= 0:
            self.cost_basis.pop(data, None)
            return
        basis = self.cost_basis.get(data, 0.0)
        total = basis * held + price * delta if delta > 0 else basis * now
        self.cost_basis[data] = (total + fee) / now

    def _affordable(self, size, price, data, day):
        """Largest lot multiple <= size whose cost plus commission fits in cash."""
        ci = self.getcommissioninfo(data)
        ci.today = day
        lot = self.p.rules.lot_size
        if size * price + ci.getcommission(size, price) <= self.cash:
            return size
        n = math.floor(self.cash / (price * (1 + ci.p.commission)) / lot) * lot
        n = min(n, size)
        while n > 0 and n * price + ci.getcommission(n, price) > self.cash:
            n -= lot
        return max(n, 0)

    def _refuse(self, order, day, reason, untradable=False):
        if untradable and self.p.rules.unfilled == "keep":  # BigQuant without auto-cancel: try again next session
            return self._log(order, day, 0, math.nan, 0.0, "open", reason + "; the order stays open")
        order.reject()
        self.notify(order)
        self._log(order, day, 0, math.nan, 0.0, "rejected", reason)

    def _log(self, order, day, filled, price, commission, status, reason):
        self.order_log.append({
            "created": bt.num2date(order.created.dt).date(),
            "datetime": day,
            "instrument": order.data._name,
            "side": "buy" if order.isbuy() else "sell",
            "requested": abs(order.size),
            "filled": filled,
            "price": price,
            "commission": commission,
            "status": status,
            "reason": reason,
            "ref": order.ref,
        })

    def log_unfilled(self):
        """Orders still pending when the data ends (placed on the last session)."""
        for order in self.pending:
            if order is None or not order.alive():
                continue
            self.order_log.append({
                "created": bt.num2date(order.created.dt).date(), "datetime": None, "instrument": order.data._name,
                "side": "buy" if order.isbuy() else "sell", "requested": abs(order.size), "filled": 0,
                "price": math.nan, "commission": 0.0, "status": "unfilled", "reason": "backtest ended before the fill",
                "ref": order.ref,
            })
