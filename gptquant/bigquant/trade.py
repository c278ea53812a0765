"""The trade call behind M.trade.vN, M.bigtrader.vN and bigtrader.run: BigQuant's keywords -> gptquant.trade.

Keywords that change a run are honoured; display and platform ones are accepted and logged once as
ignored; anything else is an error naming the keyword (a typo must not pass silently).
"""
from __future__ import annotations

import functools
import logging
import re

import pandas as pd

from ..errors import GptquantError
from .datasource import DataSource, index_code
from .result import BigQuantResult

log = logging.getLogger("gptquant.bigquant")

HONOURED = {
    "instruments", "start_date", "end_date", "initialize", "handle_data", "before_trading_start", "prepare",
    "after_trading", "handle_order", "handle_trade", "handle_tick", "options_data", "options", "capital_base",
    "benchmark", "volume_limit", "order_price_field_buy", "order_price_field_sell", "auto_cancel_non_tradable_orders",
    "price_type", "data_frequency", "frequency", "market", "data", "rebalance_period_type", "rebalance_period_days",
    "rebalance_period_roll_forward", "before_start_days", "history_ds", "amount_integer",
    # gptquant's own: the GPT panel, checkpoints, a title for the report
    "panel", "panel_at", "checkpoints", "title",
}
IGNORED = {  # display or platform-only: nothing to do on a local run
    "plot_charts": "charts are in result.to_html() / render()",
    "backtest_only": "there is no live trading here",
    "render": "call result.render(path) for the HTML report",
    "debug": "use logging.getLogger('gptquant') for more output",
    "report_output_path": "call result.save(folder)",
    "product_type": "only A-share stocks are traded",
    "backtest_engine_mode": "one engine (backtrader with A-share rules)",
    "logger": "logs go to logging.getLogger('gptquant.strategy')",
    "treasury_return": "the risk-free rate is 0 in every metric",
    "show_progress": "progress is not shown",
    "disable_cache": "there is no module cache",
    "user_data": "not used",
}
DAILY = {"daily", "1d", "day", "Frequency.DAILY"}
MARKETS = {"CN_STOCK", "CN_STOCK_A", "Market.CN_STOCK"}
PRICE_TYPES = {"后复权": "post", "post": "post", "post_right": "post", "backward": "post",
               "真实价格": "real", "real": "real", "none": "real", "不复权": "real",
               "前复权": "forward", "forward": "forward", "pre_right": "forward"}


def run_trade(**kw) -> BigQuantResult:
    """One BigQuant trade module call (see the module docstring)."""
    unknown = sorted(k for k in kw if k not in HONOURED and k not in IGNORED and not k.startswith("m_"))
    if unknown:
        raise GptquantError(f"trade: unknown keyword(s) {', '.join(unknown)}; accepted: "
                            f"{', '.join(sorted(HONOURED | set(IGNORED)))} and BigQuant's m_* module settings")
    for k in sorted(k for k in kw if k in IGNORED or k.startswith("m_")):
        log.info("%s=%r ignored: %s", k, kw[k], IGNORED.get(k, "a BigQuant module setting"))
    for k in ("data_frequency", "frequency"):
        if kw.get(k) is not None and str(kw[k]) not in DAILY:
            raise GptquantError(f"{k}={kw[k]!r}: only daily bars are in the data root (use 'daily')")
    if kw.get("market") is not None and str(kw["market"]) not in MARKETS:
        raise GptquantError(f"market={kw['market']!r}: only the A-share stock market (CN_STOCK) is supported")
    if kw.get("handle_tick") is not None:
        log.info("handle_tick is never called: a daily backtest has no ticks")
    if kw.get("history_ds") is not None:
        log.info("history_ds ignored: data.history reads the data root's bars")
    if kw.get("amount_integer") is False:
        log.info("amount_integer=False ignored: A-share orders are in whole lots of 100")

    codes, start, end = resolve_instruments(kw.get("instruments"), kw.get("start_date"), kw.get("end_date"))
    if not start or not end:
        raise GptquantError("trade needs start_date and end_date (or an instruments source that carries them)")
    from ..backtest.assets import style_of

    style = style_of(codes) if codes else _style_of_table(kw.get("options_data"), kw.get("data"))
    history_days = int(kw.get("before_start_days") or 1)
    bars = _bars(codes, start, end, kw.get("price_type"), history_days)
    benchmark, benchmark_data = resolve_benchmark(kw.get("benchmark", "000300.HIX"), bars, start, end)
    auto_cancel = kw.get("auto_cancel_non_tradable_orders", True)
    from ..backtest.broker import Rules

    rules = Rules(unfilled="keep_partial" if auto_cancel else "keep")
    positions: dict = {}
    ctx_holder = []
    result = _trade()(
        codes, start, end, _keep_context(kw["initialize"], ctx_holder) if kw.get("initialize") else None,
        _rebalanced(kw.get("handle_data"), kw), kw.get("before_trading_start"), kw.get("prepare"),
        kw.get("options_data"), kw.get("capital_base", 1e6), benchmark,
        kw.get("order_price_field_buy", "open"), kw.get("order_price_field_sell", "close"),
        kw.get("volume_limit", 0.025), data=bars, benchmark_data=benchmark_data, panel=kw.get("panel"),
        panel_at=kw.get("panel_at", "open"), options=kw.get("options"), rules=rules, title=kw.get("title"),
        checkpoints=kw.get("checkpoints"), after_trading=_recording(kw.get("after_trading"), ctx_holder),
        handle_order=kw.get("handle_order"), handle_trade=kw.get("handle_trade"), code_style=style,
        attributes={"data": kw["data"]} if kw.get("data") is not None else None, history_days=history_days)
    if ctx_holder:
        positions = {pd.Timestamp(d): rows for d, rows in getattr(ctx_holder[0], "_bq_positions", {}).items()}
    return BigQuantResult.of(result, positions)


def _trade():
    from ..backtest.bigquant import trade

    return trade


def resolve_instruments(value, start, end):
    """(codes or None, start, end) from M.instruments.v2(...) (or its .data), anything with .read() giving
    {"instruments", "start_date", "end_date"}, that dict, a list of codes, a newline/comma separated string, or None."""
    if value is None:
        return None, start or None, end or None
    if hasattr(value, "data") and hasattr(value.data, "read"):
        value = value.data
    if hasattr(value, "read"):
        value = value.read()
    if isinstance(value, dict):
        if "instruments" not in value:
            raise GptquantError(f"instruments: a dict needs an 'instruments' key, got keys {sorted(value)}")
        start, end = start or value.get("start_date"), end or value.get("end_date")
        value = value["instruments"]
    if isinstance(value, str):
        value = [c for c in re.split(r"[\s,;]+", value) if c]
    if isinstance(value, pd.Series):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise GptquantError(f"instruments: expected a list of codes, a dict or M.instruments.v2(...).data, got "
                            f"{type(value).__name__}")
    return (list(value) or None), start or None, end or None


def _style_of_table(*tables) -> str:
    from ..backtest.assets import style_of

    for t in tables:
        if isinstance(t, DataSource):
            try:
                t = t.read()
            except GptquantError:
                continue
        if isinstance(t, pd.DataFrame) and "instrument" in t.columns and len(t):
            return style_of(t["instrument"].head(1).astype(str))
    return "bigquant"


def _bars(codes, start, end, price_type, history_days):
    """The data root's bars in the price_type asked (None: as stored, loaded by the run itself)."""
    if price_type is None:
        return None
    kind = PRICE_TYPES.get(str(price_type).strip().lower(), PRICE_TYPES.get(str(price_type).strip()))
    if kind is None:
        raise GptquantError(f"price_type={price_type!r}: use one of {', '.join(PRICE_TYPES)}")
    from ..backtest.engine import bars_for

    bars = bars_for(None, codes, start, end, warmup=max(1, history_days))
    if "adj_factor" not in bars.columns:
        log.info("price_type=%r: the data root's bars have no adj_factor column, so its prices are used as stored",
                 price_type)
        return bars
    if kind == "real":
        return bars
    factor = bars["adj_factor"].astype(float)
    if kind == "forward":
        factor = factor / factor.groupby(bars["instrument"]).transform("last")
    bars = bars.copy()
    for col in ("open", "high", "low", "close", "pre_close"):
        if col in bars.columns:
            bars[col] = bars[col] * factor
    bars["volume"] = bars["volume"] / factor  # the same traded value: the volume cap is unchanged
    log.info("price_type=%r: prices %s-adjusted with the data root's adj_factor", price_type, kind)
    return bars


def resolve_benchmark(code, bars, start, end):
    """(code, benchmark_data): an index in any spelling (.HIX/.INDX/.ZIX/.SHA/.SH) from the data root's index/,
    or a stock from its bars."""
    if not code:
        return None, None
    text = str(code).strip().upper()
    canon = index_code(text)
    digits, exch = canon.split(".")
    is_index = text.endswith(("HIX", "INDX", "ZIX", "CSI")) or (exch == "SH" and digits.startswith("000")) \
        or (exch == "SZ" and digits.startswith("399"))
    if is_index:
        return canon, None
    from ..backtest.engine import bars_for

    source = bars[bars["instrument"] == canon] if bars is not None and (bars["instrument"] == canon).any() else \
        bars_for(None, [canon], pd.Timestamp(start) - pd.Timedelta(days=30), end)
    return canon, source


def _keep_context(initialize, holder):
    @functools.wraps(initialize)
    def wrapped(context):
        holder.append(context)
        return initialize(context)

    return wrapped


def _recording(after_trading, holder):
    """after_trading plus a snapshot of the positions after each close (raw_perf's `positions` column)."""

    def wrapped(context, data):
        if after_trading is not None:
            after_trading(context, data)
        day = str(data.current_dt.date())
        rows = [{"sid": e.symbol, "amount": p.amount, "cost_basis": float(p.cost_basis),
                 "last_sale_price": float(p.last_sale_price)} for e, p in context.portfolio.positions.items()]
        if not hasattr(context, "_bq_positions"):
            context._bq_positions = {}
        context._bq_positions[day] = rows

    return wrapped


def _rebalanced(handle_data, kw):
    """bigtrader's rebalance_period_days: handle_data runs on every n-th session from the start only."""
    days = kw.get("rebalance_period_days")
    if handle_data is None or not days:
        return handle_data
    kind = str(kw.get("rebalance_period_type") or "交易日")
    if kind not in ("交易日", "trading_day", "trading_days", "day", "d"):
        raise GptquantError(f"rebalance_period_type={kind!r}: only trading-day periods ('交易日') are supported")
    days = int(days)
    if days < 1:
        raise GptquantError(f"rebalance_period_days must be >= 1, got {days}")

    @functools.wraps(handle_data)
    def wrapped(context, data):
        if context.trading_day_index % days == 0:
            return handle_data(context, data)

    return wrapped
