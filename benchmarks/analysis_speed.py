"""Analysis-stage speed: load_bars on bars that are already clean, analyze() on a panel, vs alphalens.

Prints seconds for pd.read_parquet, load_bars(DataFrame) and load_bars(Parquet file) on clean bars (what the
nightly job's bar cache holds), analyze() as the nightly job calls it, and the quantile and turnover figures
computed here vs by alphalens-reloaded (its import included, as a nightly process pays it), with the ratio
and the largest difference between the two.

    python benchmarks/analysis_speed.py [--bars astock_daily.csv] [--panel panel.parquet --column nll_mean_ewm]

Without --panel the factor is momentum_panel(bars), a point-in-time price feature that needs no model.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared")) / "data"


def timed(fn, repeat=1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", default=str(SHARED / "astock_prices" / "astock_daily.csv"))
    ap.add_argument("--volume-unit", default="lots")
    ap.add_argument("--panel", help="a panel Parquet file (default: momentum from the bars)")
    ap.add_argument("--column", default="nll_mean_ewm")
    ap.add_argument("--start", default="2018-07-01")
    ap.add_argument("--end", default="2020-12-31")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from gptquant.analysis.factor import _factor_data, analyze, factor_turnover, forward_returns, quantile_returns
    from gptquant.market.prices import load_bars, momentum_panel

    if not Path(args.bars).exists():
        print(f"no bars at {args.bars}: pass --bars")
        return 1
    start, end = pd.Timestamp(args.start), pd.Timestamp(args.end)
    t, bars = timed(lambda: load_bars(args.bars, start=start - pd.Timedelta(days=90), end=end, volume_unit=args.volume_unit))
    print(f"bars: {len(bars):,} rows, {bars['instrument'].nunique()} instruments ({t:.2f} s to load {Path(args.bars).name})")
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "bars.parquet"
        bars.to_parquet(clean)
        t_read, _ = timed(lambda: pd.read_parquet(clean), args.repeat)
        t_file, _ = timed(lambda: load_bars(clean), args.repeat)
    t_frame, again = timed(lambda: load_bars(bars), args.repeat)
    pd.testing.assert_frame_equal(again, bars)
    print(f"pd.read_parquet          {t_read:7.3f} s")
    print(f"load_bars(clean frame)   {t_frame:7.3f} s")
    print(f"load_bars(clean Parquet) {t_file:7.3f} s  ({t_file / t_read:.1f}x read_parquet alone)")

    if args.panel:
        panel, column = pd.read_parquet(args.panel), args.column
    else:
        panel, column = momentum_panel(bars), "momentum"
    days = panel.index.get_level_values("datetime")
    panel = panel[(days >= start) & (days <= end)]
    first = panel.index.get_level_values("datetime").min()
    window = bars[bars["datetime"] >= first - pd.Timedelta(days=60)].reset_index(drop=True)
    t_an, result = timed(lambda: analyze(panel, column, window, horizons=[1, 5, 10], quantiles=5, min_assets=5), args.repeat)
    cov = result["coverage"]
    print(f"analyze({column}): {t_an:.3f} s on {cov['rows_used']:,} rows, {cov['sessions']} sessions, "
          f"{cov['instruments']} instruments")

    factor = panel[column].dropna()
    fwd = forward_returns(window, (1, 5, 10))
    t_ours, (ours_q, ours_t) = timed(lambda: (quantile_returns(factor, fwd, q=5), factor_turnover(factor, q=5)), args.repeat)

    def alphalens_figures():
        import alphalens as al

        data = _factor_data(factor, fwd, min_assets=5)
        data = data.assign(factor_quantile=al.utils.quantize_factor(data, quantiles=5, no_raise=True)).dropna()
        mean, _ = al.performance.mean_return_by_quantile(data, demeaned=False)
        stub = _factor_data(factor, pd.DataFrame({"1D": 0.0}, index=factor.index), min_assets=5)
        stub = stub.assign(factor_quantile=al.utils.quantize_factor(stub, quantiles=5, no_raise=True)).dropna()
        turn = pd.DataFrame({"top": al.performance.quantile_turnover(stub["factor_quantile"], 5),
                             "bottom": al.performance.quantile_turnover(stub["factor_quantile"], 1),
                             "rank_autocorr": al.performance.factor_rank_autocorrelation(stub)}).iloc[1:]
        return mean, turn

    t_al, (al_q, al_t) = timed(alphalens_figures)  # once: the first call pays the import, as a nightly run does
    diff = max(np.nanmax(np.abs(ours_q.to_numpy() - al_q.to_numpy())),
               np.nanmax(np.abs(ours_t.to_numpy() - al_t.reindex(ours_t.index).to_numpy())))
    print(f"quantile returns + turnover: here {t_ours:.3f} s, alphalens {t_al:.3f} s (import included): "
          f"{t_al / t_ours:.1f}x; largest difference {diff:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
