"""Two strategies in the exact shapes BigQuant exports (M.trade.v4 StockRanker template, bigtrader.run with
HandleDataLib), pasted unchanged after `from gptquant.bigquant import *`, on a synthetic market and on the shared
A-share prices."""
from __future__ import annotations

import math

import pandas as pd
import pytest

pytest.importorskip("backtrader")

from bigquant_world import STOCKS, predictions, write_world  # noqa: E402
from conftest import DATA, need  # noqa: E402

from gptquant.bigquant import *  # noqa: E402,F401,F403
from gptquant.bigquant import DataSource, M, PerOrder, T, bigtrader  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402


# ---- pasted from a BigQuant StockRanker template (comments translated) ---------------------------------------
def m19_initialize_bigquant_run(context):
    # predictions come in through options_data
    context.ranker_prediction = context.options['data'].read_df()
    context.set_commission(PerOrder(buy_cost=0.0003, sell_cost=0.0013, min_cost=5))
    stock_count = 3
    # log-decaying weights: [0.4, 0.3, 0.25]-ish, normalised
    context.stock_weights = T.norm([1 / math.log(i + 2) for i in range(0, stock_count)])
    context.max_cash_per_instrument = 0.4
    context.options['hold_days'] = 3


def m19_handle_data_bigquant_run(context, data):
    ranker_prediction = context.ranker_prediction[
        context.ranker_prediction.date == data.current_dt.strftime('%Y-%m-%d')]
    is_staging = context.trading_day_index < context.options['hold_days']
    cash_avg = context.portfolio.portfolio_value / context.options['hold_days']
    cash_for_buy = min(context.portfolio.cash, (1 if is_staging else 1.5) * cash_avg)
    cash_for_sell = cash_avg - (context.portfolio.cash - cash_for_buy)
    positions = {e.symbol: p.amount * p.last_sale_price
                 for e, p in context.perf_tracker.position_tracker.positions.items()}
    if not is_staging and cash_for_sell > 0:
        equities = {e.symbol: e for e, p in context.perf_tracker.position_tracker.positions.items()}
        instruments = list(reversed(list(ranker_prediction.instrument[ranker_prediction.instrument.apply(
                lambda x: x in equities and not context.has_unfinished_sell_order(equities[x]))])))
        for instrument in instruments:
            context.order_target(context.symbol(instrument), 0)
            cash_for_sell -= positions[instrument]
            if cash_for_sell <= 0:
                break
    buy_cash_weights = context.stock_weights
    buy_instruments = list(ranker_prediction.instrument[:len(buy_cash_weights)])
    max_cash_per_instrument = context.portfolio.portfolio_value * context.max_cash_per_instrument
    for i, instrument in enumerate(buy_instruments):
        cash = cash_for_buy * buy_cash_weights[i]
        if cash > max_cash_per_instrument - positions.get(instrument, 0):
            cash = max_cash_per_instrument - positions.get(instrument, 0)
        if cash > 0:
            context.order_value(context.symbol(instrument), cash)


def m19_prepare_bigquant_run(context):
    pass


def m19_before_trading_start_bigquant_run(context, data):
    pass


def stockranker(predictions_df, start, end, instruments=None, **extra):
    m1 = M.instruments.v2(instruments=instruments, start_date=start, end_date=end, market='CN_STOCK_A')
    return M.trade.v4(
        instruments=m1.data,
        options_data=DataSource.write_df(predictions_df),
        start_date='',
        end_date='',
        initialize=m19_initialize_bigquant_run,
        handle_data=m19_handle_data_bigquant_run,
        prepare=m19_prepare_bigquant_run,
        before_trading_start=m19_before_trading_start_bigquant_run,
        volume_limit=0.025,
        order_price_field_buy='open',
        order_price_field_sell='close',
        capital_base=1000000,
        auto_cancel_non_tradable_orders=True,
        data_frequency='daily',
        price_type='后复权',
        product_type='股票',
        plot_charts=True,
        backtest_only=False,
        benchmark='000300.HIX',
        m_cached=False,
        **extra,
    )


# ---- pasted from a BigQuant bigtrader template ------------------------------------------------------------
def bt_initialize(context: bigtrader.IContext):
    context.set_commission(PerOrder(buy_cost=0.0003, sell_cost=0.0013, min_cost=5))


def bt_handle_data(context: bigtrader.IContext, data: bigtrader.IBarData):
    return bigtrader.HandleDataLib.handle_data_weight_based(context, data, max_cash_per_instrument=0.45,
                                                            show_progress="%Y-%m")


def weight_table(root, start, end):
    """The two best-scored names of each session at 0.45 each (the table a BigQuant SQL would give)."""
    p = predictions(root, start, end)
    top = p.groupby("date", sort=True).head(2).copy()
    top["weight"] = 0.45
    return top[["date", "instrument", "weight"]]


def bigtrader_run(df, start, end):
    return bigtrader.run(
        market=bigtrader.Market.CN_STOCK,
        frequency=bigtrader.Frequency.DAILY,
        instruments=list(set(df["instrument"])),
        start_date=start,
        end_date=end,
        data=df,
        capital_base=1000000,
        initialize=bt_initialize,
        before_trading_start=None,
        handle_data=bt_handle_data,
        handle_trade=None,
        handle_order=None,
        after_trading=None,
        order_price_field_buy="open",
        order_price_field_sell="open",
        benchmark="000300.SH",
        backtest_engine_mode="标准模式",
        before_start_days=0,
        volume_limit=1,
        rebalance_period_type="交易日",
        rebalance_period_days=5,
        rebalance_period_roll_forward=True,
        logger=bigtrader.BigLogger("backtest"),
    )


@pytest.fixture
def world(tmp_path, monkeypatch):
    write_world(tmp_path)
    monkeypatch.setenv("GPTQUANT_DATA_ROOT", str(tmp_path))
    return tmp_path


def test_stockranker_v4_template_runs_unchanged_and_buys_the_top_predictions(world):
    start, end = "2021-02-01", "2021-03-31"
    preds = predictions(world, start, end)
    result = stockranker(preds, start, end)
    days = sessions(start, end)
    assert list(result.daily.index) == list(days)
    orders = result.orders
    filled = orders[orders["filled"] > 0]
    assert (pd.to_datetime(filled["datetime"]) > pd.to_datetime(filled["created"])).all()  # handle_data D fills on D+1
    # session 0: cash_for_buy = 1e6 / hold_days; the top 3 predictions get it by the normalised log weights,
    # sized in lots from that session's close
    first = orders[orders["created"] == days[0].date()].drop_duplicates("ref")
    top = preds[preds["date"] == days[0]].head(3)
    weights = [1 / math.log(i + 2) for i in range(3)]
    weights = [w / sum(weights) for w in weights]
    close = {c: pd.read_csv(world / "bars" / f"{c}.csv").set_index("date").loc["2021-02-01", "close"] for c in STOCKS}
    want = [math.floor(1e6 / 3 * w / close[c.replace("A", "")] / 100) * 100 for c, w in zip(top["instrument"], weights)]
    assert first["instrument"].tolist() == [c.replace("A", "") for c in top["instrument"]]
    assert first["requested"].tolist() == want
    perf = result.raw_perf.read_df()
    assert perf["portfolio_value"].iloc[-1] == pytest.approx(result.daily["portfolio_value"].iloc[-1])
    assert perf["positions"].iloc[-1] and all(p["sid"].endswith(("SHA", "SZA")) for p in perf["positions"].iloc[-1])


def test_stockranker_resumes_from_checkpoints_as_a_full_run_would(world, tmp_path):
    preds = predictions(world, "2021-02-01", "2021-03-31")
    cp = tmp_path / "checkpoints.bin"
    stockranker(preds, "2021-02-01", "2021-03-15", checkpoints=cp)
    resumed = stockranker(preds, "2021-02-01", "2021-03-31", checkpoints=cp)
    full = stockranker(preds, "2021-02-01", "2021-03-31")
    assert "resumed" in resumed.resume_note  # context.ranker_prediction (unchanged since initialize) is rebuilt
    pd.testing.assert_frame_equal(resumed.daily, full.daily)
    pd.testing.assert_frame_equal(resumed.orders, full.orders)
    pd.testing.assert_frame_equal(resumed.raw_perf.read_df().drop(columns=["positions", "transactions"]),
                                  full.raw_perf.read_df().drop(columns=["positions", "transactions"]))


def test_bigtrader_run_template_holds_the_weights_on_rebalance_sessions(world):
    start, end = "2021-02-01", "2021-03-31"
    df = weight_table(world, start, end)
    result = bigtrader_run(df, start, end)
    days = sessions(start, end)
    created = sorted(set(pd.to_datetime(result.orders["created"])))
    assert created and set(created) <= {days[i] for i in range(0, len(days), 5)}
    perf = result.raw_perf.read_df()
    # after the first rebalance fills (session 1) the book is session 0's two names, about 45 % each
    held = {p["sid"]: p["amount"] * p["last_sale_price"] for p in perf["positions"].iloc[1]}
    assert set(held) == set(df[df["date"] == days[0]]["instrument"])
    value = perf["portfolio_value"].iloc[1]
    assert all(0.40 < v / value < 0.48 for v in held.values())


def test_stockranker_on_the_shared_astock_prices(tmp_path, monkeypatch):
    source = need(DATA / "astock_prices" / "astock_daily.csv")
    index = need(DATA / "cn_index_daily" / "csi300_000300_daily.csv")
    (tmp_path / "bars").mkdir()
    (tmp_path / "index").mkdir()
    (tmp_path / "bars" / "astock_daily.csv").symlink_to(source)
    (tmp_path / "index" / "csi300_000300_daily.csv").symlink_to(index)
    monkeypatch.setenv("GPTQUANT_DATA_ROOT", str(tmp_path))
    start, end = "2020-03-02", "2020-04-30"
    codes = ["600000.SHA", "600036.SHA", "600519.SHA", "601318.SHA", "000001.SZA", "000002.SZA", "000333.SZA",
             "000651.SZA", "000858.SZA", "000157.SZA"]
    bars = D.history_data(codes, "2020-01-02", end, fields=["close"])  # noqa: F405
    momentum = bars.pivot(index="date", columns="instrument", values="close").pct_change(20)
    preds = momentum.stack().rename("score").reset_index().sort_values(["date", "score"], ascending=[True, False])
    preds = preds[preds["date"] >= start]
    result = stockranker(preds, start, end, instruments=codes)
    assert len(result.daily) == len(sessions(start, end))
    filled = result.orders[result.orders["filled"] > 0]
    assert len(filled) > 10 and set(filled["instrument"]) <= {c[:-1] for c in codes}
    first_day = preds[preds["date"] == pd.Timestamp(start)].head(3)["instrument"].str[:-1].tolist()
    placed = result.orders[result.orders["created"] == pd.Timestamp(start).date()].drop_duplicates("ref")
    assert placed["instrument"].tolist() == first_day  # one row per fill: a capped order fills over several sessions
