"""One self-contained HTML report per nightly run, plus its PNG figures and a JSON of every figure's data.

Sections: run facts and notes, comparison with the previous run (flagged changes first), backtest summaries,
equity vs benchmark, drawdown, monthly returns, IC by session and by horizon, quantile returns, the
distribution of the article feature over time, and the most positive / negative headlines of the latest
session. The layout is templates/run_report.html (Jinja2, autoescape on: every text from data is escaped).
Plots use matplotlib's Agg backend and a CJK font when one is installed (e.g. Debian's fonts-noto-cjk);
without one, Chinese glyphs in plot labels render as boxes but nothing fails.
"""
from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write_bytes, atomic_write_text

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "AR PL UMing CN")
HEADLINES = 5
HEADLINE_CHARS = 90

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cjk_font() -> str | None:
    """The first installed CJK font family (set as matplotlib's first sans-serif), or None."""
    from matplotlib import font_manager, rcParams

    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in names:
            if rcParams["font.sans-serif"][:1] != [name]:
                rcParams["font.sans-serif"] = [name, *rcParams["font.sans-serif"]]
            rcParams["axes.unicode_minus"] = False
            return name
    return None


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Gg]lyph.*missing.*")
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _render(figures: dict, folder: Path) -> dict:
    """Draw every figure to figures/<name>.png (written atomically); returns base64 PNGs for inlining.

    Drawing is most of a report's time, so several figures are drawn in two forked processes."""
    import os

    if len(figures) > 1 and hasattr(os, "fork") and (os.cpu_count() or 1) > 1:
        from ..parallel import ForkPool

        with ForkPool(_png, figures, 2) as pool:
            pngs = {name: future.result() for name, future in pool.futures.items()}
    else:
        pngs = {name: _png(fig) for name, fig in figures.items()}
    out = {}
    for name, fig in figures.items():
        _plt().close(fig)
        atomic_write_bytes(folder / "figures" / f"{name}.png", pngs[name])
        out[name] = base64.b64encode(pngs[name]).decode("ascii")
    return out


def _dates(index) -> list[str]:
    return [pd.Timestamp(d).date().isoformat() for d in index]


def _list(values) -> list:
    from ..jsonsafe import json_safe

    return json_safe(np.asarray(values, dtype="float64").tolist())


# ---- figure data (pure pandas, shared by the PNGs and figures.json) -----------------------------------

def equity_curves(daily: pd.DataFrame) -> pd.DataFrame:
    """Growth of 1 for the strategy and (when present) the benchmark, and the strategy's drawdown."""
    out = pd.DataFrame({"strategy": (1 + daily["returns"].astype(float)).cumprod()}, index=daily.index)
    if "benchmark_returns" in daily.columns:
        out["benchmark"] = (1 + daily["benchmark_returns"].astype(float).fillna(0.0)).cumprod()
    out["drawdown"] = out["strategy"] / out["strategy"].cummax().clip(lower=1.0) - 1
    return out


def monthly_returns(returns: pd.Series) -> pd.DataFrame:
    """Compounded return per calendar month: rows years, columns 1..12, plus the year's total."""
    r = returns.astype(float)
    by_month = (1 + r).groupby([r.index.year, r.index.month]).prod() - 1
    table = by_month.unstack()
    table.index.name, table.columns.name = "year", "month"
    table = table.reindex(columns=range(1, 13))
    table["year"] = (1 + r).groupby(r.index.year).prod() - 1
    return table


def feature_distribution(articles: pd.DataFrame, max_points: int = 120) -> pd.DataFrame:
    """Per period (sessions, or weeks when there are many): median, 10th and 90th percentile and article count."""
    a = articles.dropna(subset=["session", "value"])
    if a.empty:
        return pd.DataFrame(columns=["p10", "median", "p90", "articles"])
    key = a["session"]
    if key.nunique() > max_points:
        key = key.dt.to_period("W").dt.start_time
    g = a.groupby(key)["value"]
    out = pd.DataFrame({"p10": g.quantile(0.1), "median": g.median(), "p90": g.quantile(0.9), "articles": g.size()})
    out.index.name = "period"
    return out


def latest_headlines(articles: pd.DataFrame, n: int = HEADLINES) -> tuple[pd.Timestamp | None, pd.DataFrame, pd.DataFrame]:
    """The latest session with scored news, and its n highest and n lowest articles by value."""
    a = articles.dropna(subset=["session", "value"])
    if a.empty:
        return None, a, a
    last = a["session"].max()
    day = a[a["session"] == last].sort_values(["value", "article_id"], ascending=[False, True], kind="stable")
    k = min(n, (len(day) + 1) // 2)  # few articles: split them, never show one in both lists
    return last, day.head(k), day.iloc[::-1].head(min(n, len(day) - k))


# ---- the report --------------------------------------------------------------------------------------

def write_report(folder, *, title: str, info: dict, analysis: dict | None, backtests: list[dict],
                 articles: pd.DataFrame, feature: str, comparison: list[dict], notes=()) -> Path:
    """Write report.html, figures/*.png and figures.json into folder; returns the HTML path.

    backtests: dicts with name, status, summary, error and `result` (an object with .daily, or None).
    articles: one row per article with article_id, session, instruments, text and value (the feature).
    comparison: rows of gptquant.history.compare.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    font = cjk_font()
    notes = list(notes)
    if font is None:
        notes.append("no CJK font installed: Chinese in plot labels renders as boxes (install fonts-noto-cjk)")
    figs: dict = {"title": title, "info": info, "notes": notes, "comparison": comparison}
    imgs: dict = {}

    # equity, drawdown, monthly returns
    ok = [b for b in backtests if b.get("result") is not None]
    curves = {b["name"]: equity_curves(b["result"].daily) for b in ok}
    figs["equity"] = {n: {"dates": _dates(c.index), "strategy": _list(c["strategy"]),
                          **({"benchmark": _list(c["benchmark"])} if "benchmark" in c else {})} for n, c in curves.items()}
    figs["drawdown"] = {n: {"dates": _dates(c.index), "drawdown": _list(c["drawdown"])} for n, c in curves.items()}
    months = {b["name"]: monthly_returns(b["result"].daily["returns"]) for b in ok}
    figs["monthly_returns"] = {n: {str(y): _list(row) for y, row in t.iterrows()} for n, t in months.items()}
    if curves:
        fig, ax = plt.subplots(figsize=(9, 4))
        bench_drawn = False
        for n, c in curves.items():
            ax.plot(c.index, c["strategy"], label=n)
            if "benchmark" in c and not bench_drawn:
                ax.plot(c.index, c["benchmark"], label="benchmark", color="black", linewidth=1, linestyle="--")
                bench_drawn = True
        ax.set_ylabel("growth of 1"), ax.grid(alpha=0.3), ax.legend()
        imgs["equity"] = fig
        fig, ax = plt.subplots(figsize=(9, 2.8))
        for n, c in curves.items():
            ax.fill_between(c.index, c["drawdown"], 0, alpha=0.35, label=n)
        ax.set_ylabel("drawdown"), ax.grid(alpha=0.3), ax.legend()
        imgs["drawdown"] = fig

    # factor analysis
    if analysis:
        ic = analysis.get("ic", {})
        first_h = analysis["horizons"][0]
        series = {kind: pd.Series(ic.get(kind, {}).get(first_h, {}), dtype="float64") for kind in ("ic", "rank_ic")}
        for s in series.values():
            s.index = pd.to_datetime(s.index)
        figs["ic_by_session"] = {"horizon": first_h, **{k: {"dates": _dates(s.index), "values": _list(s)} for k, s in series.items()}}
        rk = series["rank_ic"].sort_index()
        if len(rk):
            fig, ax = plt.subplots(figsize=(9, 3))
            # one line collection, not a bar patch per session (hundreds of patches took most of the report's time)
            ax.vlines(rk.index, 0, rk.to_numpy(), colors=np.where(rk.to_numpy() >= 0, "tab:green", "tab:red"), alpha=0.5)
            ax.plot(rk.index, rk.rolling(20, min_periods=5).mean(), color="black", label="20-session mean")
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_ylabel(f"Rank IC ({first_h})"), ax.legend(), ax.grid(alpha=0.3)
            imgs["ic_session"] = fig
        decay = analysis.get("ic_decay", {})
        figs["ic_by_horizon"] = decay
        if decay.get("rank_ic"):
            hs = sorted(decay["rank_ic"], key=int)
            fig, ax = plt.subplots(figsize=(6, 3))
            for kind in ("ic", "rank_ic"):
                ax.plot([int(h) for h in hs], [decay.get(kind, {}).get(h) for h in hs], marker="o", label=kind)
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xlabel("horizon (sessions)"), ax.set_ylabel("mean IC"), ax.legend(), ax.grid(alpha=0.3)
            imgs["ic_horizon"] = fig
        qret = analysis.get("quantile_returns", {})
        figs["quantile_returns"] = qret
        if qret:
            frame = pd.DataFrame(qret).astype(float)
            frame.index = frame.index.astype(int)
            frame = frame.sort_index()
            fig, ax = plt.subplots(figsize=(6, 3))
            width = 0.8 / max(len(frame.columns), 1)
            for k, col in enumerate(frame.columns):
                ax.bar(frame.index + (k - (len(frame.columns) - 1) / 2) * width, frame[col] * 1e4, width=width, label=col)
            ax.set_xlabel("quantile (1 = lowest)"), ax.set_ylabel("mean forward return (bp)"), ax.legend(), ax.grid(alpha=0.3)
            imgs["quantiles"] = fig

    # the feature over time and the latest headlines
    dist = feature_distribution(articles)
    figs["distribution"] = {"feature": feature, "periods": _dates(dist.index),
                            **{c: _list(dist[c]) for c in ("p10", "median", "p90", "articles")}}
    if len(dist):
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.fill_between(dist.index, dist["p10"], dist["p90"], alpha=0.3, label="10-90 %")
        ax.plot(dist.index, dist["median"], label="median")
        ax.set_ylabel(f"article {feature}"), ax.legend(), ax.grid(alpha=0.3)
        imgs["distribution"] = fig
    last, top, bottom = latest_headlines(articles)
    cut = lambda t: t if len(t) <= HEADLINE_CHARS else t[:HEADLINE_CHARS] + "…"  # noqa: E731
    figs["headlines"] = {"session": last.date().isoformat() if last is not None else None, "feature": feature,
                         **{k: [{"article_id": str(r.article_id), "instruments": r.instruments, "value": float(r.value),
                                 "headline": cut(str(r.text))} for r in t.itertuples()] for k, t in (("top", top), ("bottom", bottom))}}

    atomic_write_text(folder / "figures.json", json.dumps(figs, ensure_ascii=False, indent=1, default=str) + "\n")
    path = folder / "report.html"
    imgs = _render(imgs, folder)
    atomic_write_text(path, _html(title, info, notes, comparison, backtests, months, analysis, imgs, figs, feature))
    return path


# info entries whose value is a table of numbers: (heading, key column, value column, number format)
INFO_TABLES = {"timings_s": ("Stage timings", "stage", "seconds", ".2f")}


def _html(title, info, notes, comparison, backtests, months, analysis, imgs, figs, feature) -> str:
    """The context of templates/run_report.html (the layout lives there; the template escapes every value)."""
    from ..templates import render

    tables = []
    for key, value in info.items():
        if isinstance(value, dict):
            heading, k_col, v_col, spec = INFO_TABLES.get(key, (key, "key", "value", ".4f"))
            tables.append({"title": heading, "head": [k_col, v_col], "rows": list(value.items()), "spec": spec,
                           "cls": key})
    keys = list(next((b["summary"] for b in backtests if b.get("summary")), {}) or {})
    month_rows = {name: [(y, [None if pd.isna(v) else 100 * v for v in row]) for y, row in t.iterrows()]
                  for name, t in months.items()}
    return render("run_report.html", title=title, facts=[(k, v) for k, v in info.items() if not isinstance(v, dict)],
                  fact_tables=tables, notes=notes, comparison=comparison, backtests=backtests, summary_keys=keys,
                  months=month_rows, analysis=analysis, imgs=imgs, headlines=figs["headlines"], feature=feature)
