"""`gptquant nightly CONFIG.toml`: load news -> score (cached) -> panel -> analysis -> backtests -> report -> record."""
from __future__ import annotations


def configure(verb, parser):
    parser.add_argument("config", help="nightly config (TOML), e.g. backtests/demo.toml")
    parser.add_argument("--out", default=None, help="output folder for runs and history (default: [output] dir, else ./runs)")
    parser.add_argument("--force", action="store_true", help="run even when no input changed since the last ok run")
    parser.set_defaults(func=run)


def run(args) -> int:
    from .nightly import run_nightly

    result = run_nightly(args.config, out=args.out, force=args.force)
    if result["skipped"]:
        return 0
    t = result["timings"]
    print("stage timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    print(f"scored {result['scored']} of {result['articles']} articles (the rest from the cache)")
    flagged = [r["metric"] for r in result["comparison"] if r["flagged"]]
    if flagged:
        print(f"changed beyond thresholds since the previous run: {', '.join(flagged)}")
    if result["failed"]:
        print(f"FAILED backtest(s): {', '.join(result['failed'])} (see {result['run_dir']}/backtests/<name>/error.txt)")
    print(f"report: {result['report']}")
    return 1 if result["failed"] else 0
