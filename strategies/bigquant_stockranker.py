"""BigQuant's classic StockRanker template, driven by the GPT news panel instead of a StockRanker model.

The shape a BigQuant user knows: every session spend about 1/hold_days of the book on the best-ranked
names with log-decaying weights (T.norm([1/log(i+2)])), capped per name; after the staging period sell
the worst-ranked holdings to fund it. Limit-aware exits, as in BigQuant's variants: a holding whose last
close sat at its limit-up is kept (the move tends to continue); one at its limit-down is not sold (the
sell would be refused at the open) and is tried again the next session.

The ranking is panel row D (news before D's 09:30, known before the open), so it runs in
before_trading_start and fills at D's open; BigQuant's template ranks in handle_data on predictions
for D and fills on D+1. Run it with `gptquant backtest backtests/bigquant_stockranker.toml`, or paste it
under `from gptquant.bigquant import *` into an M.trade.v4(...) call.
"""
import math

from gptquant.bigquant import T


def initialize(context):
    o = context.options
    context.column = o.get("column", "sentiment_ewm")
    context.stock_count = int(o.get("stock_count", 5))
    context.hold_days = int(o.get("hold_days", 5))
    context.max_cash_per_instrument = float(o.get("max_cash_per_instrument", 0.2))
    if context.stock_count < 1 or context.hold_days < 1:
        raise ValueError("stock_count and hold_days must be >= 1")
    context.stock_weights = T.norm([1 / math.log(i + 2) for i in range(context.stock_count)])


def ranked(context, data):
    """Tradable instruments with a panel value, best first (ties by code, so runs are reproducible)."""
    scores = data.current(context.instruments, context.column).dropna()
    scores = scores[[data.can_trade(s) for s in scores.index]]
    return [s for s, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def at_limit(data, sym):
    """Did the last completed session close at its limit-up or limit-down?"""
    close, up, down = data.history(sym, ["close", "up_limit", "down_limit"], 1, "1d").to_numpy()[-1]
    return close >= up - 0.005 or close <= down + 0.005  # False when the limits are unknown (NaN)


def before_trading_start(context, data):
    ranking = ranked(context, data)
    portfolio = context.portfolio
    is_staging = context.trading_day_index < context.hold_days
    cash_avg = portfolio.portfolio_value / context.hold_days
    cash_for_buy = min(portfolio.cash, (1 if is_staging else 1.5) * cash_avg)
    cash_for_sell = cash_avg - (portfolio.cash - cash_for_buy)
    positions = {e: p.amount * p.last_sale_price for e, p in portfolio.positions.items()}

    if not is_staging and cash_for_sell > 0:
        worst_first = [s for s in reversed(ranking) if s in positions] + [s for s in positions if s not in ranking]
        for sym in worst_first:
            if context.has_unfinished_sell_order(sym) or at_limit(data, sym):
                continue
            context.order_target(sym, 0)
            cash_for_sell -= positions[sym]
            if cash_for_sell <= 0:
                break

    cap = portfolio.portfolio_value * context.max_cash_per_instrument
    for sym, weight in zip(ranking, context.stock_weights):
        cash = min(cash_for_buy * weight, cap - positions.get(sym, 0))
        if cash > 0:
            context.order_value(sym, cash)


def handle_data(context, data):
    pass
