"""A vectorised engine for the strategy families strategies/ ships: their decisions and the A-share rules on arrays.

Why: a parameter sweep ran the whole event engine (backtrader, one Python call per line per bar) once per grid
point. Here the bars are aligned once per sweep (the event engine's own `feeds.align`, so both see the same
prices, limits and suspensions) and each point is one loop over sessions doing array work per rebalance.

A strategy module opts in with `VECTOR_FAMILY = "top_k"` (strategies/sentiment_topk.py): before session D opens
it ranks panel row D over the names it can trade, sells what left the top K, and orders every top name to
(1 - cash_buffer) / K of the portfolio value at D-1's close, sized in lots from D-1's close. The fills follow
broker.AShareBroker exactly: sells before buys at one price field (buys fill in rank order), refused when
suspended or at the limit, capped by volume_limit, lots, T+1, a buy cut to the lots cash affords, commission
with its minimum and stamp duty by date. `VECTOR_FAMILY = "news_event"` (strategies/news_event.py) is the
threshold family: enter above a score, leave below one or after N sessions (`news_event`). The sweep (gptquant.backtest.sweep) re-runs a sample of the points on
the event engine and refuses to report when they disagree (`crosscheck`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import GptquantError
from .broker import PRICE_FIELDS, Rules

FAMILIES = ("top_k", "news_event")
TOLERANCE = 1e-6  # relative difference in final value above which a sweep refuses to report


@dataclass
class Market:
    """Session x instrument arrays on the event engine's grid; `first` is the first recorded session's row."""

    days: pd.DatetimeIndex
    names: list
    open: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    suspended: np.ndarray
    up_limit: np.ndarray
    down_limit: np.ndarray
    panel: object  # feeds.PanelArrays: column -> session x instrument
    first: int

    @classmethod
    def build(cls, bars: pd.DataFrame, panel: pd.DataFrame | None, start, end, from_start: bool = False) -> "Market":
        """From `load_bars` output (with the sessions before start that `engine.bars_for` adds) and a panel.
        The BigQuant face's grid keeps those sessions (from_start=False), the native face's starts at start."""
        from .feeds import PanelArrays, align, session_grid

        grid = session_grid(bars, start if from_start else None, end)
        aligned = align(bars, grid, None)
        line = {name: aligned.block[:, :, k] for k, name in enumerate(aligned.lines)}
        first = int(grid.searchsorted(pd.Timestamp(start)))
        if first >= len(grid):
            raise GptquantError(f"no session from {pd.Timestamp(start).date()} in the bars")
        return cls(grid, aligned.names, line["open"], line["close"], line["volume"], line["suspended"] > 0,
                   line["up_limit"], line["down_limit"], PanelArrays(panel, grid, aligned.names), first)


@dataclass
class Outcome:
    """What one run produced: recorded sessions' value, cash and traded value, and closed trades' net P&L."""

    days: pd.DatetimeIndex
    value: np.ndarray
    cash: np.ndarray
    traded: np.ndarray
    trade_pnl: list

    def result(self, capital: float, bench: pd.Series | None = None, benchmark: str | None = None, title="vector"):
        """A BacktestResult (summary metrics computed as for the event engine; no per-order log)."""
        from .result import BacktestResult

        daily = pd.DataFrame({"portfolio_value": self.value, "cash": self.cash}, index=pd.Index(self.days, name="datetime"))
        daily["positions_value"] = daily["portfolio_value"] - daily["cash"]
        prev = daily["portfolio_value"].shift(1)
        prev.iloc[0] = float(capital)
        daily["returns"] = daily["portfolio_value"] / prev - 1
        daily["traded_value"] = self.traded
        daily["turnover"] = daily["traded_value"] / 2 / daily["portfolio_value"]
        if bench is not None:
            daily["benchmark_returns"] = bench.to_numpy()
        trades = pd.DataFrame({"pnl_net": self.trade_pnl}, dtype=float)
        orders = pd.DataFrame(columns=["created", "datetime", "instrument", "side", "requested", "filled", "price",
                                       "commission", "status", "reason", "ref"])
        return BacktestResult(daily, orders, trades, capital_base=capital, benchmark=benchmark, title=title)


def top_k(m: Market, rules: Rules, capital: float, column: str = "sentiment", top_k: int = 10,
          rebalance_every: int = 5, cash_buffer: float = 0.01) -> Outcome:
    """strategies/sentiment_topk.py on the arrays (its options by name)."""
    top_k, rebalance_every = int(top_k), int(rebalance_every)
    if top_k < 1 or rebalance_every < 1:
        raise GptquantError("top_k and rebalance_every must be >= 1")
    if column not in m.panel:
        raise GptquantError(f"panel column {column!r} not found (the panel has {', '.join(m.panel) or 'no columns'})")
    score, weight, lot = m.panel[column], (1 - float(cash_buffer)) / top_k, rules.lot_size
    with np.errstate(invalid="ignore"):
        tradable = ~m.suspended & (m.close > 0) & ~np.isnan(score)  # close is NaN before an instrument's first bar
    book = _Book(m, rules, capital)
    for i in range(m.first, len(m.days)):
        if (i - m.first) % rebalance_every == 0 and i > 0:  # session 0 has no known close to size from
            cand = np.flatnonzero(tradable[i])
            top = cand[np.argsort(-score[i, cand], kind="stable")[:top_k]]  # ties: lower code first, as pick()
            price = m.close[i - 1, top]
            known = price > 0  # without a known close the event engine logs "no price" and orders nothing
            top, price = top[known], price[known]
            value = book.value(i - 1)
            target = np.floor(value * weight / price / lot) * lot if value > 0 else np.zeros(len(top))
            delta = target - book.shares[top]
            up, down = delta > 0, (delta < 0) & (target > 0)  # order_target: whole lots, except selling out
            delta[up] -= delta[up] % lot
            delta[down] += (-delta[down]) % lot
            in_top = np.zeros(len(m.names), dtype=bool)
            in_top[top] = True
            exits = book.held[~in_top[book.held]]
            idx, delta = np.concatenate([exits, top]), np.concatenate([-book.shares[exits], delta])
            book.fill(i, idx[delta != 0], delta[delta != 0])
        book.close_day(i)
    return book.outcome()


def news_event(m: Market, rules: Rules, capital: float, column: str = "sentiment", enter_above: float = 0.5,
               exit_below: float = -0.2, hold_sessions: int = 5, weight: float = 0.1) -> Outcome:
    """strategies/news_event.py on the arrays: decided after session i's close, filled on i+1.

    As there, the holding clock starts only when the entry filled in full (a cut entry exits on the score alone),
    and an exit the rules refuse is asked again after the next close."""
    if column not in m.panel:
        raise GptquantError(f"panel column {column!r} not found (the panel has {', '.join(m.panel) or 'no columns'})")
    score = m.panel[column]
    with np.errstate(invalid="ignore"):
        can_enter = (score >= enter_above) & ~m.suspended & (m.close > 0)  # NaN scores and closes compare False
        score_exit = score <= exit_below
    book = _Book(m, rules, capital)
    entered = np.full(len(m.names), -1)  # len(strategy) when the entry was reported filled in full; -1: unknown
    idx, want = np.zeros(0, dtype=int), np.zeros(0)
    for i in range(m.first, len(m.days)):
        if len(idx):
            got = book.fill(i, idx, want)
            entered[idx[(want > 0) & (got == want)]] = i + 1
            entered[idx[book.shares[idx] == 0]] = -1
        book.close_day(i)
        held = book.held
        since = entered[held]
        leave = held[score_exit[i, held] | ((since >= 0) & (i + 1 - since >= hold_sessions))]
        enter = np.flatnonzero(can_enter[i] & (book.shares == 0))
        if len(enter):
            shares = np.trunc(book.value(i) * weight / m.close[i, enter] / 100) * 100
            enter, shares = enter[shares != 0], shares[shares != 0]
        else:
            shares = np.zeros(0)
        idx = np.concatenate([leave, enter])  # buys in feed order (ascending codes), as the strategy loops its datas
        want = np.concatenate([-book.shares[leave], shares])
    return book.outcome()


class _Book:
    """Cash, positions and the fill rules of broker.AShareBroker for market orders placed before an open."""

    def __init__(self, m: Market, rules: Rules, capital: float):
        from .broker import AShareCommission

        if rules.cash_policy != "a_share":
            raise GptquantError("the vector engine implements cash_policy 'a_share' only")
        if rules.slippage or rules.unfilled != "cancel":
            raise GptquantError("the vector engine implements slippage 0 and unfilled 'cancel' only")
        self.m, self.r = m, rules
        self.cash = float(capital)
        self.shares = np.zeros(len(m.names))
        self.held = np.zeros(0, dtype=int)  # names with a position
        fields = {True: rules.order_price_field_buy, False: rules.order_price_field_sell}
        # the broker's order at one bar: open fills before close fills, sells before buys at the same field
        self.sequence = [(buy, m.open if fields[buy] == "open" else m.close)
                         for _, buy in sorted((PRICE_FIELDS.index(fields[b]), b) for b in (True, False))]
        self.trade_cash = np.zeros(len(m.names))  # sells - buys - fees of each open round trip
        ci = AShareCommission(stamp_duty=rules.stamp_duty)
        self.stamp = np.array([ci.stamp_rate(d.date()) for d in m.days])
        n = len(m.days) - m.first
        self.values, self.cashes, self.traded = np.zeros(n), np.zeros(n), np.zeros(n)
        self.trade_pnl: list[float] = []

    def value(self, i: int) -> float:
        """Cash plus positions at session i's close (backtrader's broker value when the strategy sizes)."""
        if i < 0:
            return self.cash
        return self.cash + float(np.dot(self.shares[self.held], self.m.close[i, self.held]))

    def fill(self, i: int, idx: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Fill orders for names idx (delta: signed shares, in the order submitted) at session i in the broker's
        sequence; returns the shares each got (signed). A day has a few dozen orders at most, so after one
        gather per line the rules run on Python floats. T+1 never binds here: a strategy of these families has
        one order per name per session, so nothing bought in a session is sold in it."""
        r, m = self.r, self.m
        names, wants = idx.tolist(), delta.tolist()
        suspended, volume = m.suspended[i, idx].tolist(), m.volume[i, idx].tolist()
        up, down, held = m.up_limit[i, idx].tolist(), m.down_limit[i, idx].tolist(), self.shares[idx].tolist()
        lot, tol, cap, stamp = r.lot_size, r.limit_tolerance, r.volume_limit, float(self.stamp[i])
        got, traded = [0.0] * len(names), 0.0
        for buy, prices in self.sequence:
            for k, (j, want, p) in enumerate(zip(names, wants, prices[i, idx].tolist())):
                if (want > 0) != buy or suspended[k] or not p > 0:
                    continue
                if r.price_limits and (p >= up[k] - tol if buy else p <= down[k] + tol):  # NaN limit: not refused
                    continue
                size = min(abs(want), math.floor(volume[k] * cap)) if cap else abs(want)
                if buy:
                    size = self._affordable(p, size - size % lot)
                    if size <= 0:
                        continue
                    cost = size * p
                    spent = cost + max(cost * r.commission, r.min_commission)
                    self.cash -= spent
                    self.trade_cash[j] -= spent
                    self.shares[j] = held[k] + size
                    got[k], traded = size, traded + cost
                    continue
                size = min(size, held[k])
                if size < held[k] and size % lot:  # odd lots only to sell out the whole position
                    size -= size % lot
                if size <= 0:
                    continue
                value = size * p
                if r.sell_cost is not None:
                    fee = max(value * r.sell_cost, r.min_commission)
                else:
                    fee = max(value * r.commission, r.min_commission) + value * stamp
                self.cash += value - fee
                self.trade_cash[j] += value - fee
                self.shares[j] = held[k] - size
                got[k], traded = -size, traded + value
                if self.shares[j] == 0:
                    self.trade_pnl.append(float(self.trade_cash[j]))
                    self.trade_cash[j] = 0.0
        self.traded[i - m.first] += traded
        self.held = np.flatnonzero(self.shares)
        return np.array(got)

    def _affordable(self, p: float, size: float) -> float:
        """broker._affordable: the whole lots of size whose cost plus commission the cash covers."""
        r = self.r
        if size <= 0 or size * p + max(size * p * r.commission, r.min_commission) <= self.cash:
            return size
        n = min(math.floor(self.cash / (p * (1 + r.commission)) / r.lot_size) * r.lot_size, size)
        while n > 0 and n * p + max(n * p * r.commission, r.min_commission) > self.cash:
            n -= r.lot_size
        return n

    def close_day(self, i: int) -> None:
        k = i - self.m.first
        self.values[k], self.cashes[k] = self.value(i), self.cash

    def outcome(self) -> Outcome:
        return Outcome(self.m.days[self.m.first:], self.values, self.cashes, self.traded, self.trade_pnl)
