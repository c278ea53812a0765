"""`gptquant backtest CONFIG.toml`: run one backtest from a config (gptquant.backtest.job), or with
`--sweep` the grid of its `[sweep]` table (gptquant.backtest.sweep)."""
from __future__ import annotations

from pathlib import Path

from ..errors import GptquantError
from .job import load_config, out_dir, run_config


def configure(verb, parser):
    parser.add_argument("config", help="backtest config (TOML): data, panel, strategy module and params, dates, rules")
    parser.add_argument("--out", help="output folder (default: [output] dir, else backtest_out/<config name>)")
    sweep = parser.add_argument_group("parameter sweep (gptquant.backtest.sweep)")
    sweep.add_argument("--sweep", action="store_true", help="run the grid in the config's [sweep] table, one task per point")
    sweep.add_argument("--engine", choices=("local", "ray", "vector"), default="local",
                       help="local process pool (default), Ray, or the vectorised top-K engine (gptquant.backtest.vector)")
    sweep.add_argument("--check", choices=("sample", "all"), default="sample",
                       help="vector engine: re-run the best, worst and median points (default) or all on the event engine")
    sweep.add_argument("--workers", type=int, default=None, help="parallel tasks (default: CPU count)")
    sweep.add_argument("--address", default=None, help="Ray cluster address (default: a running or new local Ray)")
    sweep.add_argument("--history", default=None, help="SQLite run history (default: <out>/history.sqlite)")
    parser.set_defaults(func=main)


def main(args) -> int:
    if getattr(args, "sweep", False):
        from .sweep import main as sweep_main

        return sweep_main(args)
    if getattr(args, "engine", "local") != "local" or any(getattr(args, k, None) for k in ("workers", "address", "history")) \
            or getattr(args, "check", "sample") != "sample":
        raise GptquantError("--engine, --check, --workers, --address and --history apply only with --sweep")
    path = Path(args.config)
    config = load_config(path)
    if "sweep" in config:
        raise GptquantError(f"{path}: has a [sweep] table; run it with --sweep (or remove the table)")
    result = run_config(config, path.parent)
    out = Path(args.out) if args.out else out_dir(config, path)
    result.save(out)
    for key, value in result.summary.items():
        print(f"{key:>18}: {value:.4f}")
    print(f"wrote {out}/report.html, summary.json, daily.csv, orders.csv, trades.csv")
    return 0


