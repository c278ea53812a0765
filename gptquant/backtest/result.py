"""What a backtest hands back: daily equity, orders, trades, summary metrics and a one-file HTML report.

Metrics are computed directly with pandas (252 sessions a year, zero risk-free rate) so each one is a
line a reader can check; alpha and beta follow empyrical's definitions.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_text

YEAR = 252
SUMMARY_KEYS = ("annual_return", "volatility", "sharpe", "max_drawdown", "alpha", "beta", "information_ratio", "win_rate",
                "turnover", "total_return", "benchmark_return")


def metrics(returns: pd.Series, benchmark: pd.Series | None = None, trades: pd.DataFrame | None = None,
            turnover: pd.Series | None = None) -> dict:
    """Summary metrics as fractions.

    annual_return: compounded; volatility: std × √252; sharpe / information_ratio: mean/std × √252;
    max_drawdown: the worst peak-to-trough fall (≤ 0); beta: cov(r, b)/var(b); alpha: (1 + mean(r − beta·b))^252 − 1;
    win_rate: share of closed trades with a positive net P&L; turnover: mean daily
    (bought + sold) / 2 / portfolio value. tests/test_backtest_empyrical.py checks these against empyrical.
    """
    r = returns.astype(float)
    n = len(r)
    growth = float((1 + r).prod())
    out = dict.fromkeys(SUMMARY_KEYS, math.nan)
    out["total_return"] = growth - 1
    out["annual_return"] = growth ** (YEAR / n) - 1 if n else math.nan
    sd = r.std(ddof=1)
    out["volatility"] = float(sd * math.sqrt(YEAR)) if n > 1 else math.nan
    out["sharpe"] = float(r.mean() / sd * math.sqrt(YEAR)) if n > 1 and sd > 0 else math.nan
    curve = (1 + r).cumprod()
    out["max_drawdown"] = float((curve / curve.cummax().clip(lower=1.0) - 1).min()) if n else math.nan
    if benchmark is not None:
        b = benchmark.reindex(r.index).astype(float)
        out["benchmark_return"] = float((1 + b).prod() - 1)
        var = b.var(ddof=1)
        if n > 1 and var > 0:
            beta = float(r.cov(b) / var)
            out["beta"] = beta
            out["alpha"] = float((1 + (r - beta * b).mean()) ** YEAR - 1)
        active = r - b
        asd = active.std(ddof=1)
        out["information_ratio"] = float(active.mean() / asd * math.sqrt(YEAR)) if n > 1 and asd > 0 else math.nan
    if trades is not None and len(trades):
        out["win_rate"] = float((trades["pnl_net"] > 0).mean())
    if turnover is not None and len(turnover):
        out["turnover"] = float(turnover.mean())
    return out


class BacktestResult:
    """daily: one row per session; orders: every order and its outcome; trades: closed round trips."""

    def __init__(self, daily: pd.DataFrame, orders: pd.DataFrame, trades: pd.DataFrame, *, capital_base: float,
                 benchmark: str | None = None, title: str = "backtest"):
        self.daily, self.orders, self.trades = daily, orders, trades
        self.capital_base, self.benchmark, self.title = capital_base, benchmark, title
        bench = daily["benchmark_returns"] if "benchmark_returns" in daily.columns else None
        self.summary = metrics(daily["returns"], bench, trades, daily["turnover"])

    def __repr__(self):
        s = ", ".join(f"{k}={v:.4f}" for k, v in self.summary.items())
        return f"<BacktestResult {len(self.daily)} sessions: {s}>"

    def to_html(self, path) -> Path:
        """One self-contained HTML file (charts inlined as base64 PNG), written atomically; the layout is
        templates/backtest_report.html, which escapes every value (Jinja2 autoescape)."""
        from ..templates import frame, render

        path = Path(path)
        orders = self.orders
        refused = orders[orders["status"] != "filled"] if len(orders) else orders
        by_status = orders.groupby(["status"]).size().rename("orders").to_frame() if len(orders) else orders.iloc[:0]
        by_reason = (refused.assign(why=refused["reason"].str.split(":").str[0]).groupby(["status", "why"]).size()
                     .rename("orders").to_frame() if len(refused) else refused.iloc[:0])
        doc = render("backtest_report.html", title=self.title, first=self.daily.index[0].date(),
                     last=self.daily.index[-1].date(), sessions=len(self.daily), capital=self.capital_base,
                     benchmark=self.benchmark, summary=self.summary, equity_png=self._equity_png(),
                     orders_by_status=frame(by_status), refused_by_reason=frame(by_reason),
                     trades=frame(self.trades.tail(50), index=False))
        atomic_write_text(path, doc)
        return path

    def _equity_png(self) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(self.daily.index, self.daily["portfolio_value"] / self.capital_base, label="strategy")
        if "benchmark_returns" in self.daily.columns:
            ax.plot(self.daily.index, (1 + self.daily["benchmark_returns"]).cumprod(), label=self.benchmark or "benchmark")
        ax.set_ylabel("growth of 1")
        ax.legend()
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def save(self, folder, html: bool = True) -> Path:
        """summary.json, daily.csv, orders.csv, trades.csv and (html=True) report.html in one folder."""
        import json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        from ..jsonsafe import json_safe

        atomic_write_text(folder / "summary.json", json.dumps(json_safe(self.summary), indent=2) + "\n")
        for name in ("daily", "orders", "trades"):
            atomic_write_text(folder / f"{name}.csv", getattr(self, name).to_csv(index=(name == "daily")))
        if html:
            self.to_html(folder / "report.html")
        return folder

