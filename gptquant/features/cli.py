"""`gptquant panel`: article features + news -> point-in-time daily panel (Parquet)."""
from __future__ import annotations

from pathlib import Path

from ..errors import GptquantError
from ..tables import read_table


def configure(verb, parser):
    parser.add_argument("--features", required=True, help="article features (Parquet or CSV from `gptquant score`)")
    parser.add_argument("--news", required=True, help="the news table the features were scored from (CSV, JSONL or Parquet)")
    parser.add_argument("--out", required=True, help="panel Parquet to write")
    parser.add_argument("--cutoff", default="09:30", help="session cutoff HH:MM Asia/Shanghai (default 09:30; 15:00 for decisions at the close)")
    parser.add_argument("--halflife", type=float, default=3.0, help="half-life of the carried _ewm value in sessions (default 3)")
    parser.add_argument("--carry", type=int, default=None, help="sessions the _ewm value is carried after the latest news (default 10 half-lives)")
    parser.add_argument("--columns", default=None, help="comma-separated feature columns (default: every numeric column)")
    parser.add_argument("--aggregates", default="mean,sum,count,maxabs,ewm", help="comma-separated aggregates (default: all)")
    parser.add_argument("--ai-score-max", type=float, default=None, help="drop articles whose ai_score is above this")
    parser.add_argument("--ai-weight", type=float, default=None, help="weight articles by (1 - ai_score) ** K")
    parser.add_argument("--start", default=None, help="first session to keep (YYYY-MM-DD)")
    parser.add_argument("--end", default=None, help="last session to keep (YYYY-MM-DD); later news is rejected")
    parser.add_argument("--date-order", choices=("dmy", "mdy"), default=None,
                        help="how to read news dates like 03/04/2024 (default: such dates are rejected as ambiguous)")
    parser.add_argument("--rejects", default=None, help="CSV for news rows not used (default: OUT with .rejects.csv)")
    parser.add_argument("--qlib", action="store_true", help="write only a `score` column on a (datetime, instrument) index with Qlib codes (SH600519)")
    parser.add_argument("--score-column", default="sentiment_ewm", help="panel column used as the Qlib score (default sentiment_ewm)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd

    from ..atomic import atomic_write_text
    from ..runtime.news import read_news
    from .panel import build_panel, to_qlib, write_parquet

    out = Path(args.out)
    if not out.parent.is_dir():
        raise GptquantError(f"{out.parent}: output directory does not exist")
    features = read_table(args.features, "features", formats={".parquet", ".pq", ".csv"})
    news, news_rejects = read_news(args.news, date_order=args.date_order)
    rejects_path = Path(args.rejects) if args.rejects else out.with_suffix(".rejects.csv")
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None  # noqa: E731
    panel, rejects = (None, news_rejects.iloc[:0].assign(datetime=None)) if news.empty else build_panel(
        features, news, cutoff=args.cutoff, aggregates=split(args.aggregates), halflife=args.halflife,
        columns=split(args.columns), ai_score_max=args.ai_score_max, ai_weight=args.ai_weight,
        start=args.start, end=args.end, carry=args.carry, return_rejects=True)
    all_rejects = pd.concat([news_rejects.assign(stage="read"), rejects.assign(stage="panel")], ignore_index=True)
    if len(all_rejects):
        atomic_write_text(rejects_path, all_rejects.to_csv(index=False))
    else:
        rejects_path.unlink(missing_ok=True)  # a stale file from an earlier run would misreport this one
    if panel is None or panel.attrs["gptquant_panel"]["articles_used"] == 0:
        raise GptquantError(f"{args.news}: no news row reached the panel ({len(all_rejects)} rejected, "
                            f"see {rejects_path})")
    frame = to_qlib(panel, args.score_column) if args.qlib else panel
    write_parquet(frame, out)

    n_in = len(news) + len(news_rejects)
    used = panel.attrs["gptquant_panel"]["articles_used"]
    days = panel.index.get_level_values("datetime")
    span = f"{days.min().date()} .. {days.max().date()}" if len(days) else "empty"
    print(f"panel: {len(frame)} rows x {frame.shape[1]} columns, {panel.index.get_level_values('instrument').nunique()} instruments, "
          f"sessions {span} -> {out}")
    print(f"news rows: {n_in} in, {used} used, {len(all_rejects)} rejected" + (f" (see {rejects_path})" if len(all_rejects) else ""))
    return 0
