"""zipline-style objects the BigQuant face hands to callbacks: Equity, Position(s), Order, Transaction.

BigQuant strategies compare assets with their own code strings (`e.symbol`, `sid in my_list`,
`positions[context.symbol(code)]`), in BigQuant's spelling (600519.SHA) or ours (600519.SH). An Equity
is the canonical code string (so it hashes like '600519.SH' and every string method works), equals
the code in every spelling, and keeps in `.symbol` the spelling the strategy uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import GptquantError
from ..text import normalize_code

BIGQUANT_SUFFIX = {"SH": "SHA", "SZ": "SZA", "BJ": "BJA"}


_SEEN: dict = {}  # str -> canonical code: a market's strategies ask for the same few thousand codes millions of times


def canonical(code) -> str:
    """'600519.SHA' / Equity / '600519' -> '600519.SH'; a clear error for anything else."""
    if type(code) is str:
        hit = _SEEN.get(code)
        if hit is not None:
            return hit
    if isinstance(code, Equity):
        return str.__str__(code)
    try:
        out = normalize_code(code)
    except ValueError as exc:
        raise GptquantError(str(exc)) from None
    if type(code) is str and len(_SEEN) < 1 << 16:
        _SEEN[code] = out
    return out


def spelled(code: str, style: str) -> str:
    """A canonical code in a spelling: 'bigquant' (600519.SHA) or 'canonical' (600519.SH)."""
    if style == "bigquant":
        digits, exch = code.split(".")
        return f"{digits}.{BIGQUANT_SUFFIX[exch]}"
    return code


def style_of(codes) -> str:
    """'bigquant' when the first code is spelled the BigQuant way (.SHA/.SZA/.BJA), else 'canonical'."""
    for c in codes or ():
        return "bigquant" if str(c).strip().upper().endswith(("SHA", "SZA", "BJA")) else "canonical"
    return "canonical"


class Equity(str):
    """An A-share instrument: the canonical code string, equal to the code in any spelling; `.symbol` is the
    spelling the strategy uses, `.sid` the 6-digit number (unique among stocks)."""

    def __new__(cls, code, style: str = "canonical"):
        canon = canonical(code)
        self = super().__new__(cls, canon)
        self.symbol = spelled(canon, style)
        self.sid = int(canon[:6])
        return self

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                return str.__str__(self) == canonical(other)
            except GptquantError:
                return False
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = str.__hash__

    def __repr__(self):
        return f"Equity({self.sid}, symbol={self.symbol!r})"

    def __reduce__(self):  # checkpoints store it as (code, style)
        return Equity, (str.__str__(self), "bigquant" if self.symbol != str.__str__(self) else "canonical")


@dataclass(frozen=True)
class PerOrder:
    """BigQuant's commission model: buy_cost / sell_cost rates, min_cost per order; tax_ratio (stamp duty on
    sells) adds to sell_cost when given (BigQuant's sell_cost=0.0013 already includes 0.001 duty)."""

    buy_cost: float = 0.0003
    sell_cost: float = 0.0013
    min_cost: float = 5.0
    tax_ratio: float | None = None


@dataclass
class Position:
    """zipline's Position plus bigtrader's names (current_qty, avail_qty, cost_price, last_price)."""

    sid: Equity
    amount: int = 0
    cost_basis: float = 0.0
    last_sale_price: float = math.nan
    last_sale_date: object = None
    avail_qty: int = 0

    @property
    def asset(self) -> Equity:
        return self.sid

    @property
    def instrument(self) -> str:
        return self.sid.symbol

    current_qty = property(lambda self: self.amount)
    cost_price = property(lambda self: self.cost_basis)
    last_price = property(lambda self: self.last_sale_price)

    @property
    def market_value(self) -> float:
        return self.amount * self.last_sale_price


class Positions(dict):
    """Held positions keyed by Equity; any spelling of a code finds it; a missing asset is an empty position."""

    def __init__(self, items=(), style: str = "canonical"):
        super().__init__(items)
        self._style = style

    def __missing__(self, key):
        return Position(Equity(key, self._style))

    def __getitem__(self, key):
        return super().__getitem__(canonical(key) if isinstance(key, str) and not isinstance(key, Equity) else key)

    def __contains__(self, key):
        try:
            return super().__contains__(canonical(key) if isinstance(key, str) else key)
        except GptquantError:
            return False

    def get(self, key, default=None):
        return self[key] if key in self else default


@dataclass
class Order:
    """A snapshot of one order (zipline's fields): amount and filled are signed shares."""

    id: int
    sid: Equity
    amount: int
    filled: int
    status: str  # open, filled, cancelled, rejected
    created: object = None
    commission: float = 0.0
    limit: float | None = None
    stop: float | None = None
    reason: str = ""

    @property
    def asset(self) -> Equity:
        return self.sid

    @property
    def open(self) -> bool:
        return self.status == "open"

    @property
    def instrument(self) -> str:
        return self.sid.symbol


@dataclass
class Transaction:
    """One fill, as handle_trade(context, trade) receives it (signed amount)."""

    sid: Equity
    amount: int
    price: float
    dt: object
    order_id: int
    commission: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def instrument(self) -> str:
        return self.sid.symbol


@dataclass
class Portfolio:
    cash: float
    portfolio_value: float
    positions_value: float
    positions: Positions
    starting_cash: float
    start_date: object = None

    @property
    def returns(self) -> float:
        return self.portfolio_value / self.starting_cash - 1

    @property
    def pnl(self) -> float:
        return self.portfolio_value - self.starting_cash

    @property
    def capital_used(self) -> float:
        return self.starting_cash - self.cash
