"""`gptquant analyze`: IC, Rank IC, quantile returns, turnover and IC decay of one panel column (JSON)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import GptquantError
from ..tables import read_table


def configure(verb, parser):
    parser.add_argument("--panel", required=True, help="panel Parquet from `gptquant panel`")
    parser.add_argument("--column", required=True, help="panel column to analyse, e.g. sentiment_ewm")
    parser.add_argument("--prices", required=True, help="daily bars: a CSV/Parquet file or a folder of them")
    parser.add_argument("--horizons", default="1,5,10", help="forward-return horizons in sessions (default 1,5,10)")
    parser.add_argument("--quantiles", type=int, default=5, help="factor quantiles per session (default 5)")
    parser.add_argument("--price", default="open", choices=["open", "close"],
                        help="returns from D's open to D+h's open (default; 09:30 cutoff) or close to close (15:00 cutoff)")
    parser.add_argument("--min-assets", type=int, default=5, help="skip sessions with fewer instruments (default 5)")
    parser.add_argument("--out", required=True, help="JSON file with every figure")
    parser.set_defaults(func=run)


def _horizons(text: str) -> list[int]:
    try:
        hs = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GptquantError(f"--horizons: expected comma-separated integers, got {text!r}") from None
    if not hs or min(hs) < 1:
        raise GptquantError(f"--horizons: need positive session counts, got {text!r}")
    return hs


def run(args) -> int:
    from ..bundle import atomic_write_text
    from ..market.prices import load_bars
    from .factor import analyze

    horizons = _horizons(args.horizons)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise GptquantError(f"{out.parent}: output directory does not exist")
    panel = read_table(args.panel, "panel", formats={".parquet", ".pq"})
    bars = load_bars(args.prices)  # all of them: panel instruments without bars are counted, not fatal
    result = analyze(panel, args.column, bars, horizons=horizons, quantiles=args.quantiles,
                     price=args.price, min_assets=args.min_assets)
    atomic_write_text(out, json.dumps(result, ensure_ascii=False, allow_nan=False))
    print(summary_table(result))
    print(f"-> {out}")
    return 0


def summary_table(result: dict) -> str:
    """A small text table: IC, Rank IC, ICIR, t-stat, long-short mean per horizon."""
    cov = result["coverage"]
    lines = [f"{result['column']}: {cov['rows_used']} of {cov['panel_rows']} panel rows used, {cov['sessions']} sessions, "
             f"{cov['instruments']} instruments ({cov['first']} .. {cov['last']}); "
             f"{cov['instruments_without_prices']} panel instruments have no bars",
             f"{'horizon':>8} {'IC':>8} {'RankIC':>8} {'ICIR':>7} {'t':>7} {'n':>6} {'L-S':>9}"]
    fmt = lambda v, spec: format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))  # noqa: E731
    for h in result["horizons"]:
        ic, rk = result["ic_summary"]["ic"][h], result["ic_summary"]["rank_ic"][h]
        ls = result["long_short"]["mean"].get(h)
        lines.append(f"{h:>8} {fmt(ic['mean'], '8.4f')} {fmt(rk['mean'], '8.4f')} {fmt(rk['icir'], '7.3f')} "
                     f"{fmt(rk['t_stat'], '7.2f')} {rk['n']:>6} {fmt(ls, '9.5f')}")
    return "\n".join(lines)
