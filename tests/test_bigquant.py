"""gptquant.bigquant: BigQuant's names over the local data root, each with an expectation worked out by hand."""
from __future__ import annotations

import logging
import math
import subprocess
import sys

import pandas as pd
import pytest

pytest.importorskip("backtrader")

from gptquant.bigquant import (D, DataSource, Equity, M, PerOrder, T, bigtrader, date_rules,  # noqa: E402
                               order_target_percent, schedule_function, time_rules)
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402


def flat_root(root, codes=("600000.SH",), start="2020-12-01", end="2021-04-30", price=10.0, volume=1e7,
              overrides=None, adj_factor=None):
    """A data root with constant bars (overrides: code -> {date: {field: value}}) and a flat CSI 300."""
    (root / "bars").mkdir(parents=True, exist_ok=True)
    (root / "index").mkdir(parents=True, exist_ok=True)
    days = sessions(start, end)
    for code in codes:
        frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "open": price, "high": price, "low": price,
                              "close": price, "volume": volume})
        if adj_factor is not None:
            frame["adj_factor"] = adj_factor
        for day, change in (overrides or {}).get(code, {}).items():
            for k, v in change.items():
                frame.loc[frame["date"] == day, k] = v
        frame.to_csv(root / "bars" / f"{code}.csv", index=False)
    bench = sessions("2020-11-11", end)
    pd.DataFrame({"date": bench.strftime("%Y-%m-%d"), "close": [4000 + i for i in range(len(bench))]}) \
        .to_csv(root / "index" / "000300.csv", index=False)
    return root


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTQUANT_DATA_ROOT", str(tmp_path))
    return tmp_path


def run(start, end, handle_data=None, before_trading_start=None, initialize=None, **kw):
    kw.setdefault("benchmark", None)
    kw.setdefault("order_price_field_sell", "open")
    return M.trade.v4(instruments=kw.pop("instruments", ["600000.SHA"]), start_date=start, end_date=end,
                      initialize=initialize or (lambda context: None), handle_data=handle_data,
                      before_trading_start=before_trading_start, capital_base=1_000_000, **kw)


def test_import_is_light_and_every_documented_name_is_there():
    code = ("import sys; import gptquant.bigquant as b; from gptquant.bigquant import *; "
            "print(sorted(set(b.__all__) - set(dir())), 'backtrader' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False", "False"]
    assert M.trade.v3 is M.trade.v4 is M.trade.v7 and M.bigtrader.v30 is M.bigtrader.v34
    with pytest.raises(AttributeError, match="DataSource.write_df"):
        M.stock_ranker_train.v6
    assert T.norm([1, 1, 2]) == [0.25, 0.25, 0.5] and T.live_run_param("x", 7) == 7
    assert T.BigLogger("bt").name == "bigquant.bt"
    assert {bigtrader.Market.CN_STOCK, bigtrader.Frequency.DAILY} and PerOrder(0.001, 0.002, 5, tax_ratio=0.001).tax_ratio == 0.001


def test_equity_equals_its_code_in_every_spelling_and_finds_positions():
    e = Equity("600519.SHA", "bigquant")
    assert e == "600519.SH" == Equity("600519") and e == "600519.SHA" and e == "sh600519"
    assert e.symbol == "600519.SHA" and e.sid == 600519 and Equity("600519.SH").symbol == "600519.SH"
    assert hash(e) == hash("600519.SH") and {"600519.SH": 1}[e] == 1 and e in ["600519.SHA"]
    assert e != "000001.SZ" and e != "not a code"


def test_positions_last_sale_date_order_ids_and_empty_positions(root):
    flat_root(root, codes=("600000.SH", "000001.SZ"), overrides={"600000.SH": {"2021-03-03": {"open": 10.5, "high": 10.5}}})
    seen = {}

    def handle_data(context, data):
        day = data.current_dt.strftime("%Y-%m-%d")
        if day == "2021-03-02":
            seen["id"] = context.order(context.symbol("600000.SHA"), 1000)
            seen["before"] = context.get_order(seen["id"])
        if day == "2021-03-03":
            pos = context.portfolio.positions
            seen["after"] = (pos["600000.SHA"].amount, pos["600000.SH"].last_sale_date, pos[context.symbol("600000")].cost_basis)
            seen["keys"] = [(e.symbol, e.sid) for e in pos]
            seen["missing"] = (pos["000001.SZA"].amount, "000001.SZA" in pos, len(pos))
            seen["filled"] = context.get_order(seen["id"])

    def before_trading_start(context, data):
        if data.current_dt.strftime("%Y-%m-%d") == "2021-03-04":
            p = context.portfolio.positions["600000.SHA"]
            seen["open"] = (p.last_sale_date, p.avail_qty, context.get_position("600000.SHA").current_qty)

    run("2021-03-01", "2021-03-05", handle_data, before_trading_start, instruments=["600000.SHA", "000001.SZA"])
    assert isinstance(seen["id"], int) and seen["before"].status == "open" and seen["before"].amount == 1000
    assert seen["before"].filled == 0
    # filled at 03-03's open 10.5: cost 10 500 + 5 CNY minimum commission over 1000 shares
    assert seen["after"] == (1000, pd.Timestamp("2021-03-03"), pytest.approx(10.505))  # zipline's: the 5 CNY fee included
    assert seen["keys"] == [("600000.SHA", 600000)]
    assert seen["missing"] == (0, False, 1)
    assert (seen["filled"].status, seen["filled"].filled) == ("filled", 1000)
    # before 03-04's open the last known bar is 03-03's, and the shares bought on 03-03 are sellable on 03-04
    assert seen["open"] == (pd.Timestamp("2021-03-03"), 1000, 1000)


def test_sell_cut_by_the_volume_cap_stays_open_and_is_an_unfinished_sell_order(root):
    # 3000 shares bought on a busy day; from 03-03 on the bars trade 10 000 shares: 10 % is 1000 a session
    quiet = {d: {"volume": 10_000} for d in ("2021-03-03", "2021-03-04", "2021-03-05", "2021-03-08")}
    flat_root(root, overrides={"600000.SH": quiet})
    seen = []

    def handle_data(context, data):
        day = data.current_dt.strftime("%m-%d")
        asset = context.symbol("600000.SHA")
        if day == "03-01":
            context.order(asset, 3000)
        if day == "03-02":
            context.sell_id = context.order_target(asset, 0)
        if day >= "03-02":
            o = context.get_order(context.sell_id)
            seen.append((day, context.portfolio.positions[asset].amount, context.has_unfinished_sell_order(asset),
                         o.filled, len(context.get_open_orders(asset))))

    result = run("2021-03-01", "2021-03-08", handle_data, volume_limit=0.1)
    assert seen == [("03-02", 3000, True, 0, 1), ("03-03", 2000, True, -1000, 1), ("03-04", 1000, True, -2000, 1),
                    ("03-05", 0, False, -3000, 0), ("03-08", 0, False, -3000, 0)]
    sells = result.orders[result.orders["side"] == "sell"]
    assert sells["filled"].tolist() == [1000, 1000, 1000] and sells["ref"].nunique() == 1


def test_volume_limit_zero_means_no_cap(root):
    flat_root(root, volume=10_000)
    filled = {}
    for limit in (0, 0.025):
        res = run("2021-03-01", "2021-03-03", lambda c, d: c.order(c.symbol("600000.SHA"), 5000)
                  if c.trading_day_index == 0 else None, volume_limit=limit)
        filled[limit] = int(res.orders["filled"].iloc[0])
    assert filled == {0: 5000, 0.025: 200}  # 2.5 % of 10 000 = 250, in whole lots 200


def test_schedule_function_month_start_and_end_fire_on_those_sessions(root):
    flat_root(root)
    fired = []

    def initialize(context):
        schedule_function(lambda c, d: fired.append(("start", str(d.current_dt.date()), c._phase)),
                          date_rule=date_rules.month_start(), time_rule=time_rules.market_open(minutes=30))
        context.schedule_function(lambda c, d: fired.append(("end", str(d.current_dt.date()), c._phase)),
                                  date_rules.month_end(days_offset=1))

    run("2021-01-04", "2021-04-30", initialize=initialize)
    starts = [d for k, d, _ in fired if k == "start"]
    ends = [d for k, d, _ in fired if k == "end"]
    assert starts == ["2021-01-04", "2021-02-01", "2021-03-01", "2021-04-01"]
    assert ends == ["2021-01-28", "2021-02-25", "2021-03-30", "2021-04-29"]  # the session before each month's last
    assert {p for k, _, p in fired if k == "start"} == {"open"} and {p for k, _, p in fired if k == "end"} == {"close"}


def test_extension_survives_a_resumed_run(root, tmp_path):
    flat_root(root)
    contexts = []

    def initialize(context):
        contexts.append(context)

    def handle_data(context, data):
        context.extension["sessions"] = context.extension.get("sessions", 0) + 1

    cp = tmp_path / "cp.pkl"
    run("2021-03-01", "2021-03-31", handle_data, initialize=initialize, checkpoints=cp)
    assert contexts[-1].extension["sessions"] == len(sessions("2021-03-01", "2021-03-31")) == 23
    second = run("2021-03-01", "2021-04-30", handle_data, initialize=initialize, checkpoints=cp)
    assert "resumed" in second.resume_note
    assert contexts[-1].extension["sessions"] == 23 + len(sessions("2021-04-01", "2021-04-30")) == 44


def test_nan_or_inf_order_amounts_are_refused(root):
    flat_root(root)
    for bad in (math.nan, math.inf):
        with pytest.raises(GptquantError, match="finite"):
            run("2021-03-01", "2021-03-02", lambda c, d: order_target_percent(c.symbol("600000.SHA"), bad))
    with pytest.raises(GptquantError, match="no backtest is running"):
        order_target_percent("600000.SHA", 0.1)


def test_data_current_price_and_positional_history(root):
    closes = {"2021-03-01": 10.0, "2021-03-02": 10.2, "2021-03-03": 10.4}
    flat_root(root, overrides={"600000.SH": {d: {"close": c, "high": c} for d, c in closes.items()}})
    seen = {}

    def handle_data(context, data):
        if data.current_dt.strftime("%Y-%m-%d") == "2021-03-03":
            s = data.history(context.symbol("600000.SHA"), "close", 3, "1d")
            frame = data.history(["600000.SHA"], ["close", "open"], 2, "1d")
            seen.update(last=s[-1], first=s[0], price=data.current("600000.SHA", "price"),
                        frame=frame["close"]["600000.SH"][-1], pct=s.pct_change()[-1])

    def before_trading_start(context, data):
        if data.current_dt.strftime("%Y-%m-%d") == "2021-03-03":
            seen["before"] = data.current("600000.SHA", "price")

    run("2021-03-01", "2021-03-04", handle_data, before_trading_start)
    assert seen["last"] == 10.4 and seen["first"] == 10.0 and seen["price"] == 10.4 and seen["frame"] == 10.4
    assert seen["pct"] == pytest.approx(10.4 / 10.2 - 1) and seen["before"] == 10.2


def test_datasource_and_d_read_the_data_root_with_bigquant_names(root):
    flat_root(root, codes=("600000.SH", "000001.SZ"), adj_factor=1.5)
    df = pd.DataFrame({"date": pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-02"]),
                       "instrument": ["600000.SHA", "600000.SHA", "000001.SZA"], "score": [1.0, 2.0, 3.0]})
    ds = DataSource.write_df(df)
    assert DataSource(ds.id).read_df().equals(df) and ds == DataSource.write_df(df.copy())
    assert ds.read(start_date="2021-03-02", instruments=["000001.SZ"])["score"].tolist() == [3.0]
    assert DataSource.write_pickle({"a": 1}).read() == {"a": 1}
    bars = D.history_data(["600000.SHA"], "2021-03-01", "2021-03-03", fields=["close", "adjust_factor"])
    assert list(bars.columns) == ["date", "instrument", "close", "adjust_factor"] and len(bars) == 3
    assert set(bars["instrument"]) == {"600000.SHA"}
    with pytest.raises(GptquantError, match="pe_ttm"):
        D.features(["600000.SHA"], "2021-03-01", "2021-03-03", fields=["close", "pe_ttm"])
    assert D.instruments("2021-03-01", "2021-03-05") == ["000001.SZA", "600000.SHA"]
    assert D.trading_days("2021-02-08", "2021-02-22")["date"].dt.strftime("%m-%d").tolist() == \
        ["02-08", "02-09", "02-10", "02-18", "02-19", "02-22"]  # the Spring Festival week is closed
    index = DataSource("bar1d_index_CN_STOCK_A").read(start_date="2021-03-01", end_date="2021-03-01")
    assert index.iloc[0]["instrument"] == "000300.HIX"
    with pytest.raises(GptquantError, match="bar1d_CN_STOCK_A"):
        DataSource("market_value_CN_STOCK_A")


def test_instruments_in_every_form_and_m_instruments_v2(root):
    flat_root(root, codes=("600000.SH", "000001.SZ"))
    m1 = M.instruments.v2(instruments="600000.SHA\n000001.SZA", start_date="2021-03-01", end_date="2021-03-05")
    assert m1.data.read() == {"instruments": ["600000.SHA", "000001.SZA"], "start_date": "2021-03-01",
                              "end_date": "2021-03-05"}
    assert M.instruments.v2(start_date="2021-03-01", end_date="2021-03-05").data.read()["instruments"] == \
        ["000001.SZA", "600000.SHA"]
    days = []
    for form in (m1.data, m1, m1.data.read(), type("Src", (), {"read": lambda self: m1.data.read()})()):
        res = run("", "", instruments=form)
        days.append((str(res.daily.index[0].date()), str(res.daily.index[-1].date())))
    assert days == [("2021-03-01", "2021-03-05")] * 4
    assert len(run("2021-03-01", "2021-03-02", instruments=None).daily) == 2


def test_benchmark_in_every_spelling_and_a_stock(root):
    flat_root(root, codes=("600000.SH", "600519.SH"), overrides={"600519.SH": {"2021-03-02": {"close": 11.0, "high": 11.0}}})
    rets = [run("2021-03-01", "2021-03-03", benchmark=b).daily["benchmark_returns"].round(8).tolist()
            for b in ("000300.HIX", "000300.INDX", "000300.SHA", "000300.SH")]
    close_0301 = 4000 + sessions("2020-11-11", "2021-03-01").size - 1  # the index adds 1 a session
    assert rets[0] == rets[1] == rets[2] == rets[3] and rets[0][1] == round(1 / close_0301, 8)
    stock = run("2021-03-01", "2021-03-03", benchmark="600519.SHA").daily["benchmark_returns"].tolist()
    assert stock == pytest.approx([0.0, 0.1, 10 / 11 - 1])


def test_keywords_platform_ones_log_once_unknown_ones_fail(root, caplog):
    flat_root(root)
    with caplog.at_level(logging.INFO, logger="gptquant.bigquant"):
        run("2021-03-01", "2021-03-02", plot_charts=True, m_cached=False, product_type="股票", handle_tick=print)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("plot_charts" in m for m in lines) == 1 and sum("m_cached" in m for m in lines) == 1
    assert any("handle_tick" in m for m in lines)
    with pytest.raises(GptquantError, match="plot_chart"):
        run("2021-03-01", "2021-03-02", plot_chart=True)
    with pytest.raises(GptquantError, match="daily"):
        run("2021-03-01", "2021-03-02", data_frequency="minute")


def test_price_type_uses_adj_factor_when_the_root_has_it(root, caplog):
    flat_root(root, adj_factor=2.0)
    seen = []
    for price_type in ("后复权", "真实价格"):
        run("2021-03-01", "2021-03-02", lambda c, d: seen.append(d.current("600000.SHA", "close")), price_type=price_type)
    assert seen == [20.0, 20.0, 10.0, 10.0]


def test_raw_perf_risk_and_callbacks_on_orders(root, tmp_path):
    flat_root(root, overrides={"600000.SH": {d: {"close": 11.0, "high": 11.0} for d in ("2021-03-03", "2021-03-04")}})
    trades, orders = [], []

    def handle_data(context, data):
        if context.trading_day_index == 0:
            context.set_commission(PerOrder(buy_cost=0.001, sell_cost=0.002, min_cost=0))
            context.order(context.symbol("600000.SHA"), 10_000)

    res = run("2021-03-01", "2021-03-04", handle_data, handle_trade=lambda c, t: trades.append((t.sid.symbol, t.amount, t.price)),
              handle_order=lambda c, o: orders.append(o.status), benchmark="000300.HIX")
    assert trades == [("600000.SHA", 10_000, 10.0)] and orders[-1] == "filled"
    perf = res.raw_perf.read_df()
    # bought 10 000 at 10.0 on 03-02 (fee 100), marked at 11.0 from 03-03
    assert perf["portfolio_value"].tolist() == pytest.approx([1e6, 1e6 - 100, 1e6 - 100 + 10_000, 1e6 - 100 + 10_000])
    assert perf["pnl"].tolist() == pytest.approx([0, -100, 10_000, 0])
    assert perf["algorithm_period_return"].iloc[-1] == pytest.approx(res.summary["total_return"])
    assert perf["alpha"].iloc[-1] == pytest.approx(res.summary["alpha"])
    assert perf["positions"].iloc[-1] == [{"sid": "600000.SHA", "amount": 10_000, "cost_basis": 10.01, "last_sale_price": 11.0}]
    risk = res.risk_analyze()
    assert risk["max_drawdown"] == pytest.approx(-100 / 1e6) and risk["total_return"] == pytest.approx(9_900 / 1e6)
    returns, positions, transactions = res.pyfolio_inputs()
    assert positions.loc["2021-03-04", "600000.SHA"] == 110_000 and transactions["amount"].tolist() == [10_000]
    page = res.pyfolio_full_tear_sheet(tmp_path / "tear.html").read_text(encoding="utf-8")
    assert "<h2>Risk</h2>" in page and "sortino" in page


def test_handle_data_signal_based_buys_at_the_weight_and_exits_on_signal_or_hold_days(root):
    flat_root(root)
    rows = pd.DataFrame({"date": pd.to_datetime(["2021-03-01", "2021-03-04"]), "instrument": ["600000.SHA"] * 2,
                         "signal": [1, -1], "weight": [0.3, 0.0]})
    held = {}
    for max_hold in (None, 1):
        seen = held.setdefault(max_hold, [])

        def handle_data(context, data):
            bigtrader.HandleDataLib.handle_data_signal_based(context, data, max_hold_days=max_hold)
            seen.append(context.portfolio.positions["600000.SHA"].amount)  # noqa: B023

        bigtrader.run(instruments=["600000.SHA"], start_date="2021-03-01", end_date="2021-03-08", data=rows,
                      initialize=lambda c: None, handle_data=handle_data, benchmark=None, order_price_field_sell="open")
    # 0.3 of 1e6 at 10.0 = 30 000 shares, bought at 03-02's open; the -1 of 03-04 sells at 03-05's open
    assert held[None] == [0, 30_000, 30_000, 30_000, 0, 0]
    # max_hold_days=1: held since 03-02, sold by 03-03's handle_data, gone at 03-04's open
    assert held[1] == [0, 30_000, 30_000, 0, 0, 0]


def test_cancel_order_and_before_start_days(root):
    flat_root(root)
    seen = {}

    def handle_data(context, data):
        if context.trading_day_index == 0:
            seen["id"] = context.order(context.symbol("600000.SHA"), 1000)

    def before_trading_start(context, data):
        if context.trading_day_index == 0:
            seen["bars"] = len(data.history("600000.SHA", "close", 10, "1d"))
        if context.trading_day_index == 1:
            context.cancel_order(seen["id"])
            o = context.get_order(seen["id"])
            seen["after"] = (o.status, o.filled, context.get_open_orders())

    for days in (10, None):
        res = run("2021-03-01", "2021-03-03", handle_data, before_trading_start, before_start_days=days)
        seen.setdefault("history", []).append(seen["bars"])
    assert seen["history"] == [10, 1]  # before the first open: the sessions before start that were loaded
    assert seen["after"] == ("cancelled", 0, {}) and res.orders["filled"].sum() == 0


def test_orders_for_a_suspended_stock_wait_when_auto_cancel_is_off(root):
    flat_root(root, overrides={"600000.SH": {"2021-03-02": {"volume": 0}}})
    filled = {}
    for auto_cancel in (True, False):
        res = run("2021-03-01", "2021-03-04", lambda c, d: c.order(c.symbol("600000.SHA"), 1000)
                  if c.trading_day_index == 0 else None, auto_cancel_non_tradable_orders=auto_cancel)
        o = res.orders
        filled[auto_cancel] = (o["status"].tolist(), o[o["filled"] > 0]["datetime"].astype(str).tolist())
    assert filled[True] == (["rejected"], [])  # suspended on 03-02: cancelled
    assert filled[False] == (["open", "filled"], ["2021-03-03"])  # waits and fills when trading resumes


def test_slippage_t1_switch_record_sid_and_a_shenzhen_index_benchmark(root):
    flat_root(root)
    pd.DataFrame({"date": sessions("2020-11-11", "2021-04-30").strftime("%Y-%m-%d"), "close": 2000.0}) \
        .to_csv(root / "index" / "399006.csv", index=False)
    from gptquant.bigquant import record, sid, symbols

    def handle_data(context, data):
        if context.trading_day_index == 0:
            context.set_slippage_value(0.01)
            context.set_stock_t1(0)
            record(n=len(symbols("600000.SHA", "600000.SH")))

    def before_trading_start(context, data):
        if context.trading_day_index == 1:  # buy at the open, sell at the close of the same session (T+0 now)
            context.order(sid(600000), 1000)
            context.order_target(context.symbol("600000.SHA"), 0)
            context.seen = dict(context.extension["recorded"])

    contexts = []
    res = run("2021-03-01", "2021-03-03", handle_data, before_trading_start, initialize=contexts.append,
              benchmark="399006.ZIX", order_price_field_sell="close")
    assert contexts[0].seen == {"2021-03-01": {"n": 2}}
    o = res.orders
    assert o["side"].tolist() == ["buy", "sell"] and o["filled"].tolist() == [1000, 1000]
    assert o["price"].tolist() == pytest.approx([10.1, 9.9])  # 1 % against each side
    assert o["datetime"].astype(str).tolist() == ["2021-03-02", "2021-03-02"]
    assert res.daily["benchmark_returns"].tolist() == [0.0, 0.0, 0.0]


def test_results_over_several_assets_answer_to_bigquant_codes(root):
    flat_root(root, codes=("600000.SH", "000001.SZ"))
    seen = {}

    def handle_data(context, data):
        if context.trading_day_index == 1:
            closes = data.history(["600000.SHA", "000001.SZA"], "close", 2, "1d")
            now = data.current(["600000.SHA", "000001.SZA"], "price")
            seen.update(hist=closes["000001.SZA"][-1], cur=now["600000.SHA"], cur_eq=now[context.symbol("000001.SZA")])

    run("2021-03-01", "2021-03-03", handle_data, instruments=["600000.SHA", "000001.SZA"])
    assert seen == {"hist": 10.0, "cur": 10.0, "cur_eq": 10.0}


def test_cost_basis_spreads_every_fee_over_the_shares_held_as_zipline(root):
    flat_root(root)
    seen = []

    def handle_data(context, data):
        asset = context.symbol("600000.SHA")
        if context.trading_day_index == 0:
            context.order(asset, 1000)
        if context.trading_day_index == 1:
            seen.append(context.portfolio.positions[asset].cost_basis)
            context.order(asset, -500)
        if context.trading_day_index == 2:
            seen.append(context.portfolio.positions[asset].cost_basis)

    run("2021-03-01", "2021-03-04", handle_data)
    # buy 1000 at 10 with the 5 CNY minimum fee; sell 500 at 10: 5 CNY fee + 0.1 % stamp duty (5) over 500 left
    assert seen == pytest.approx([10.005, 10.005 + 10 / 500])
