"""The one engine both faces run on: bars + panel -> aligned feeds -> Cerebro with the A-share broker.

Native face: `run(MyStrategy, data=..., panel=...)` for a plain `bt.Strategy` (orders placed in
`next()` on session D fill on D+1 at the configured price field), or `make_cerebro(...)` to keep
full control of the Cerebro.
"""
from __future__ import annotations

from datetime import timedelta

import backtrader as bt
import pandas as pd

from ..errors import GptquantError
from ..market.calendar import sessions as xshg_sessions
from ..market.prices import data_root, load_bars, load_benchmark
from .broker import AShareBroker, AShareCommission, Rules
from .feeds import PanelArrays, align, feature_columns, feed_class, session_grid
from .result import BacktestResult


class Recorder(bt.Analyzer):
    """Daily value/cash/positions and closed trades, from `record_from` on."""

    params = (("record_from", None),)

    def start(self):
        self.days, self.trades = [], []
        self._from = self.p.record_from.date() if self.p.record_from is not None else None

    def next(self):
        # backtrader only ever appends to its private list of order notifications (copies of the orders, never
        # read again); what happened to each order is in the broker's order_log, so the list is emptied each
        # session (memory and checkpoints stay small)
        strat = self.strategy
        strat._orders = []
        day = strat.datetime.date(0)
        if self._from is not None and day < self._from:
            return
        broker = strat.broker
        held = sum(1 for p in broker.positions.values() if p.size)
        self.days.append((pd.Timestamp(day), broker.getvalue(), broker.getcash(), held))

    def notify_trade(self, trade):
        if trade.isclosed:
            self.trades.append({
                "instrument": trade.data._name,
                "open_date": bt.num2date(trade.dtopen).date(),
                "close_date": bt.num2date(trade.dtclose).date(),
                "sessions_held": trade.barlen,
                "entry_price": trade.price,
                "pnl": trade.pnl,
                "pnl_net": trade.pnlcomm,
            })


def make_cerebro(bars: pd.DataFrame, panel: pd.DataFrame | None = None, start=None, end=None, *,
                 capital_base: float = 1e6, rules: Rules | None = None, cheat_on_open: bool = False,
                 record_from=None, panel_lines: bool = True, checkpoints=None, key: str | None = None,
                 strategy_modules: tuple = ()) -> bt.Cerebro:
    """A Cerebro with one feed per instrument (named by its code), the A-share broker and a Recorder.

    bars is `load_bars` output; panel is a (datetime, instrument) frame whose columns become lines
    (panel_lines=False: `cerebro.panel_arrays` instead, a feeds.PanelArrays the BigQuant face reads).
    checkpoints (a file) with key (see runkey.run_key) makes the run resumable: `cerebro.checkpoints.wrap` the strategy
    class before adding it and `.write()` after the run.
    """
    from .resume import Checkpoints, reset_refs
    from .runkey import session_chain

    rules = rules or Rules()
    grid = session_grid(bars, start, end)
    aligned = align(bars, grid, panel if panel_lines else None)
    cls = feed_class(feature_columns(panel) if panel_lines else [])
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=cheat_on_open, preload=True, runonce=True, maxcpus=1)
    cerebro.panel_arrays = PanelArrays(None if panel_lines else panel, grid, aligned.names)
    broker = AShareBroker(rules=rules)
    broker.setcash(float(capital_base))
    broker.addcommissioninfo(AShareCommission(commission=rules.commission, min_commission=rules.min_commission,
                                              stamp_duty=rules.stamp_duty, sell_cost=rules.sell_cost))
    cerebro.broker = broker
    for name, values in aligned.feed_data().items():
        cerebro.adddata(cls(dataname=values), name=name)
    cerebro.addanalyzer(Recorder, _name="gptquant", record_from=pd.Timestamp(record_from) if record_from else None)
    reset_refs()
    cerebro.checkpoints = None
    if checkpoints is not None and key is not None:
        chain = session_chain(grid, aligned.block, aligned.names, cerebro.panel_arrays.rows())
        cerebro.checkpoints = Checkpoints(checkpoints, key, chain, strategy_modules)
    return cerebro


def run(strategy, data=None, panel: pd.DataFrame | None = None, start=None, end=None, *, instruments=None,
        benchmark: str | None = "000300.SH", benchmark_data=None, capital_base: float = 1e6,
        rules: Rules | None = None, volume_unit: str = "shares", root=None, checkpoints=None, **params) -> BacktestResult:
    """Run a native `bt.Strategy` class under the A-share rules; strategy params go in **params.

    checkpoints: a file where the run keeps its state, so that the next run with new data resumes from the
    last session whose inputs are unchanged (gptquant.backtest.resume)."""
    if not (isinstance(strategy, type) and issubclass(strategy, bt.Strategy)):
        raise GptquantError(f"run() takes a backtrader Strategy class, got {strategy!r}")
    bars = bars_for(data, instruments, start, end, volume_unit=volume_unit, root=root)
    key = None
    if checkpoints is not None:
        from .runkey import run_key, source_of

        key = run_key(face="native", strategy=source_of(strategy), params=params, rules=rules or Rules(),
                      capital_base=float(capital_base), start=str(pd.Timestamp(start).date()) if start is not None else None,
                      panel=feature_columns(panel))
    cerebro = make_cerebro(bars, panel, start, end, capital_base=capital_base, rules=rules,
                           checkpoints=checkpoints, key=key, strategy_modules=(strategy.__module__,))
    strat = run_cerebro(cerebro, strategy, **params)
    return collect(strat, capital_base, benchmark_returns(benchmark, benchmark_data, strat, root),
                   benchmark, title=strategy.__name__)


def run_cerebro(cerebro: bt.Cerebro, strategy: type, **params):
    """Add the strategy (wrapped to resume when the cerebro has checkpoints), run it, keep the checkpoints."""
    cp = cerebro.checkpoints
    cerebro.addstrategy(cp.wrap(strategy) if cp else strategy, **params)
    strat = cerebro.run()[0]
    if cp:
        cp.write()
    return strat


def bars_for(data, instruments, start, end, *, volume_unit="shares", root=None, warmup: int = 1) -> pd.DataFrame:
    """Load bars from a DataFrame/file/folder (or the data root's bars/) with a few sessions before start.

    The extra sessions give the first session a previous close (price limits, sizing before the open).
    """
    if data is None:
        data = data_root(root) / "bars"
    first = None
    if start is not None:
        before = xshg_sessions(pd.Timestamp(start) - timedelta(days=10 + 2 * warmup), start)
        first = before[max(0, len(before) - 1 - warmup)] if len(before) else start
    return load_bars(data, instruments, first, end, volume_unit=volume_unit)


def benchmark_returns(benchmark, benchmark_data, strat, root=None) -> pd.Series | None:
    """Benchmark daily returns on the recorded sessions; a missing session is an error, not a gap."""
    if not benchmark:
        return None
    return benchmark_on(benchmark, benchmark_data, pd.DatetimeIndex([d for d, *_ in strat.analyzers.gptquant.days]), root)


def benchmark_source(benchmark_data, root=None):
    """Where a run's benchmark closes come from: [data] benchmark_data (a file, folder or frame), else the
    data root's index folder."""
    return benchmark_data if benchmark_data is not None else data_root(root) / "index"


def benchmark_on(benchmark, benchmark_data, days: pd.DatetimeIndex, root=None) -> pd.Series | None:
    """Benchmark daily returns on the given sessions (the vector engine's, or a run's recorded ones)."""
    if not len(days):
        return None
    closes = load_benchmark(benchmark_source(benchmark_data, root), benchmark, start=days[0] - timedelta(days=20), end=days[-1])
    rets = closes.pct_change(fill_method=None)
    missing = days.difference(closes.index)
    if len(missing) or (closes.index < days[0]).sum() == 0:
        what = f"e.g. {missing[0].date()}" if len(missing) else f"the session before {days[0].date()}"
        raise GptquantError(f"benchmark {benchmark}: no close for {len(missing) or 1} session(s), {what}")
    return rets.reindex(days)


def collect(strat, capital_base: float, bench: pd.Series | None, benchmark: str | None, title: str) -> BacktestResult:
    """Turn the Recorder's rows and the broker's order log into a BacktestResult."""
    rec = strat.analyzers.gptquant
    broker = strat.broker
    broker.log_unfilled()
    if not rec.days:
        raise GptquantError("the backtest produced no sessions (check start/end against the data)")
    daily = pd.DataFrame(rec.days, columns=["datetime", "portfolio_value", "cash", "n_positions"]).set_index("datetime")
    daily["positions_value"] = daily["portfolio_value"] - daily["cash"]
    prev = daily["portfolio_value"].shift(1)
    prev.iloc[0] = float(capital_base)  # nothing trades before the first recorded session
    daily["returns"] = daily["portfolio_value"] / prev - 1
    traded = pd.Series({pd.Timestamp(k): v for k, v in broker.traded_value.items()}, dtype=float)
    daily["traded_value"] = traded.reindex(daily.index).fillna(0.0)
    daily["turnover"] = daily["traded_value"] / 2 / daily["portfolio_value"]
    if bench is not None:
        daily["benchmark_returns"] = bench.to_numpy()
    orders = pd.DataFrame(broker.order_log, columns=["created", "datetime", "instrument", "side", "requested", "filled",
                                                     "price", "commission", "status", "reason", "ref"])
    trades = pd.DataFrame(rec.trades, columns=["instrument", "open_date", "close_date", "sessions_held",
                                               "entry_price", "pnl", "pnl_net"])
    result = BacktestResult(daily, orders, trades, capital_base=capital_base, benchmark=benchmark, title=title)
    checkpoints = getattr(strat.env, "checkpoints", None)
    result.resume_note = checkpoints.note if checkpoints else None  # how much of the run was resumed, and why
    return result

