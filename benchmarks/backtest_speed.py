"""Plain backtrader vs gptquant's engine, rules off and rules on: weekly top-30 momentum, 300 names x 1,250 sessions.

The same native `bt.Strategy` runs three times on a synthetic market with no missing bar (seeded, see
vector_speed.synthetic): on plain backtrader (PandasData feeds, percentage commission), on gptquant with the
A-share rules off (`cash_policy="backtrader"`: it must give the same orders and final value) and on gptquant
with the A-share rules on; then rules off but the default A-share cash policy (what differed before
`cash_policy` existed). Prints each time, the ratios to plain backtrader and the final values.

    python benchmarks/backtest_speed.py [--instruments 300] [--sessions 1250]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import backtrader as bt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_speed import synthetic  # noqa: E402


class WeeklyMomentum(bt.Strategy):
    """Every 5 sessions hold the k names with the best 20-bar return, 1 / k of the value each."""

    params = (("k", 30),)

    def next(self):
        if len(self) <= 20 or len(self) % 5:
            return
        ranked = sorted(self.datas, key=lambda d: (-(d.close[0] / d.close[-20]), d._name))
        top = set(ranked[:self.p.k])
        for d in self.datas:
            if self.getposition(d).size and d not in top:
                self.order_target_percent(d, 0)
        for d in ranked[:self.p.k]:
            self.order_target_percent(d, 1.0 / self.p.k)  # fully invested: some buys meet a cash shortfall


def plain(bars) -> tuple[float, int]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(1e6)
    cerebro.broker.addcommissioninfo(bt.CommInfoBase(commission=0.0003, stocklike=True, percabs=True,
                                                     commtype=bt.CommInfoBase.COMM_PERC))
    for name, g in bars.groupby("instrument"):
        cerebro.adddata(bt.feeds.PandasData(dataname=g.set_index("datetime")[["open", "high", "low", "close", "volume"]]),
                        name=name)
    cerebro.addstrategy(WeeklyMomentum)
    strat = cerebro.run()[0]
    return strat.broker.getvalue(), len(strat.datas)


def gptquant(bars, rules) -> tuple[float, int]:
    from gptquant.backtest import make_cerebro
    from gptquant.backtest.engine import run_cerebro

    strat = run_cerebro(make_cerebro(bars, None, rules=rules), WeeklyMomentum)
    filled = sum(1 for o in strat.broker.order_log if o["status"] in ("filled", "partial"))
    return strat.broker.getvalue(), filled


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=1250)
    args = ap.parse_args()
    from gptquant.backtest import Rules

    bars, _, _, _ = synthetic(args.instruments, args.sessions, missing=0.0)
    off = Rules(t_plus_1=False, lot_size=1, price_limits=False, volume_limit=None, order_price_field_sell="open",
                min_commission=0.0, stamp_duty=(), cash_policy="backtrader")
    on = Rules(order_price_field_sell="open")
    times, values = {}, {}
    for name, fn in (("plain backtrader", lambda: plain(bars)), ("gptquant rules off", lambda: gptquant(bars, off)),
                     ("gptquant rules on", lambda: gptquant(bars, on)),
                     ("off, A-share cash", lambda: gptquant(bars, off.replace(cash_policy="a_share")))):
        t0 = time.perf_counter()
        values[name] = fn()[0]
        times[name] = time.perf_counter() - t0
    base = times["plain backtrader"]
    n_bars = args.instruments * (args.sessions + 1)
    print(f"universe: {args.instruments} names x {args.sessions + 1} sessions = {n_bars:,} bars, weekly top-30 momentum")
    for name in times:
        print(f"{name:<19}: {times[name]:7.2f} s = {n_bars / times[name]:9,.0f} bars/s, {times[name] / base:5.2f}x plain "
              f"backtrader's time; final value {values[name]:,.2f}")
    rel = abs(values["gptquant rules off"] / values["plain backtrader"] - 1)
    print(f"rules off vs plain backtrader: final value relative difference {rel:.1e} "
          f"({'equal' if rel <= 1e-9 else 'DIFFERENT'} at 1e-9)")
    a_share = abs(values["off, A-share cash"] / values["plain backtrader"] - 1)
    print(f"rules off but the A-share cash policy (sells first, buys cut to cash): {a_share:.1e} from plain backtrader")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    return 0 if rel <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
