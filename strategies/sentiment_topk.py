"""Top-K by a panel column, equal weight, rebalanced every N sessions (BigQuant style).

Run it with `gptquant backtest backtests/sentiment_topk.toml` or pass these functions to
`gptquant.trade(...)` with options={"column": ..., "top_k": ..., "rebalance_every": ...}.

The ranking happens in before_trading_start: panel row D (news before D's 09:30) is known before
D's open, so the orders fill at D's open. Names that are suspended or have no score are skipped;
a name at limit-up at the open is refused by the broker and the cash waits for the next rebalance.

VECTOR_FAMILY lets `gptquant backtest --sweep CONFIG --engine vector` replay it on arrays
(gptquant.backtest.vector.top_k): change the logic below and that engine no longer matches (its sweep's
cross-check against this code says so).
"""

VECTOR_FAMILY = "top_k"


def initialize(context):
    o = context.options
    context.column = o.get("column", "sentiment")
    context.top_k = int(o.get("top_k", 10))
    context.rebalance_every = int(o.get("rebalance_every", 5))
    context.cash_buffer = float(o.get("cash_buffer", 0.01))  # room for commission and price gaps
    if context.top_k < 1 or context.rebalance_every < 1:
        raise ValueError("top_k and rebalance_every must be >= 1")


def pick(scores, k):
    """The k highest scores; ties broken by instrument code so runs are reproducible."""
    ranked = scores.dropna().rename("score").reset_index().rename(columns={"index": "instrument"})
    ranked = ranked.sort_values(["score", "instrument"], ascending=[False, True])
    return list(ranked["instrument"].head(k))


def before_trading_start(context, data):
    if context.trading_day_index % context.rebalance_every:
        return
    scores = data.current(context.instruments, context.column)
    tradable = [s for s in scores.index if data.can_trade(s)]
    top = pick(scores[tradable], context.top_k)
    for sym, pos in context.portfolio.positions.items():
        if sym not in top and pos.amount > 0:
            context.order_target_percent(sym, 0)
    weight = (1 - context.cash_buffer) / context.top_k
    for sym in top:
        context.order_target_percent(sym, weight)


def handle_data(context, data):
    pass
