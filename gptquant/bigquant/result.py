"""What a BigQuant trade module hands back: gptquant's BacktestResult plus raw_perf, risk_analyze() and a
pyfolio equivalent.

raw_perf.read_df() is one row per session with zipline/BigQuant's column names; the running statistics
(algorithm_period_return, sharpe, max_drawdown, alpha, beta, algo_volatility) are computed from the first
session to that row, as zipline's performance tracker does. pyfolio is not a dependency:
`pyfolio_inputs()` gives (returns, positions, transactions) in pyfolio's shapes, and
`pyfolio_full_tear_sheet(path)` writes gptquant's HTML report with the risk table (or calls pyfolio's own
tear sheet when it is installed and no path is given).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from ..backtest.result import YEAR, BacktestResult
from .datasource import DataSource, bigquant_code

log = logging.getLogger("gptquant.bigquant")


class BigQuantResult(BacktestResult):
    """`m.raw_perf.read_df()`, `m.risk_analyze()`, `m.pyfolio_full_tear_sheet()`, `performance.render()`."""

    positions_by_day: dict = {}

    @classmethod
    def of(cls, result: BacktestResult, positions_by_day: dict | None = None) -> "BigQuantResult":
        out = cls(result.daily, result.orders, result.trades, capital_base=result.capital_base,
                  benchmark=result.benchmark, title=result.title)
        out.resume_note = getattr(result, "resume_note", None)
        out.positions_by_day = positions_by_day or {}
        return out

    @property
    def raw_perf(self) -> DataSource:
        return DataSource.write_df(self.perf_frame())

    def perf_frame(self) -> pd.DataFrame:
        d = self.daily
        r = d["returns"].astype(float)
        growth = (1 + r).cumprod()
        n = np.arange(1, len(r) + 1)
        mean, sd = r.expanding().mean(), r.expanding().std(ddof=1)
        out = pd.DataFrame(index=pd.DatetimeIndex(d.index, name="date"))
        out["date"] = out.index
        out["starting_cash"] = d["cash"].shift(1).fillna(self.capital_base).to_numpy()
        out["ending_cash"] = d["cash"].to_numpy()
        out["starting_value"] = d["positions_value"].shift(1).fillna(0.0).to_numpy()
        out["ending_value"] = d["positions_value"].to_numpy()
        out["long_value"] = out["ending_value"]
        out["portfolio_value"] = d["portfolio_value"].to_numpy()
        out["capital_used"] = (out["ending_cash"] - out["starting_cash"]).to_numpy()
        out["pnl"] = d["portfolio_value"].diff().fillna(d["portfolio_value"].iloc[0] - self.capital_base).to_numpy()
        out["returns"] = r.to_numpy()
        out["algorithm_period_return"] = (growth - 1).to_numpy()
        out["algo_volatility"] = (sd * math.sqrt(YEAR)).to_numpy()
        out["sharpe"] = (mean / sd * math.sqrt(YEAR)).replace([np.inf, -np.inf], np.nan).to_numpy()
        out["max_drawdown"] = (growth / growth.cummax().clip(lower=1.0) - 1).cummin().to_numpy()
        out["gross_leverage"] = (out["ending_value"] / out["portfolio_value"]).to_numpy()
        out["longs_count"] = d["n_positions"].to_numpy()
        out["trading_days"] = n
        out["turnover"] = d["turnover"].to_numpy()
        if "benchmark_returns" in d.columns:
            b = d["benchmark_returns"].astype(float)
            out["benchmark_return"] = b.to_numpy()
            out["benchmark_period_return"] = ((1 + b).cumprod() - 1).to_numpy()
            out["benchmark_volatility"] = (b.expanding().std(ddof=1) * math.sqrt(YEAR)).to_numpy()
            beta = (r.expanding().cov(b) / b.expanding().var(ddof=1)).replace([np.inf, -np.inf], np.nan)
            out["beta"] = beta.to_numpy()
            out["alpha"] = ((1 + r.expanding().mean() - beta * b.expanding().mean()) ** YEAR - 1).to_numpy()
            out["excess_return"] = (out["algorithm_period_return"] - out["benchmark_period_return"]).to_numpy()
        out["positions"] = [self.positions_by_day.get(day, []) for day in out.index]
        out["transactions"] = self._transactions_by_day(out.index)
        return out

    def _transactions_by_day(self, days) -> list:
        o = self.orders
        filled = o[o["filled"] > 0] if len(o) else o
        per = {}
        for row in filled.itertuples(index=False):
            sign = 1 if row.side == "buy" else -1
            per.setdefault(pd.Timestamp(row.datetime), []).append(
                {"sid": bigquant_code(row.instrument), "amount": sign * int(row.filled), "price": float(row.price),
                 "commission": float(row.commission), "order_id": row.ref, "dt": pd.Timestamp(row.datetime)})
        return [per.get(day, []) for day in days]

    def risk_analyze(self) -> pd.Series:
        """Whole-run risk figures (fractions): the summary plus volatility, downside risk, Sortino, Calmar,
        tracking error, daily win rate, 95 % one-day VaR and the worst drawdown's dates."""
        r = self.daily["returns"].astype(float)
        out = dict(self.summary)
        vol = r.std(ddof=1) * math.sqrt(YEAR)
        downside = math.sqrt((np.minimum(r, 0) ** 2).mean()) * math.sqrt(YEAR)
        out.update(annual_volatility=vol, downside_risk=downside,
                   sortino=(r.mean() * YEAR / downside) if downside > 0 else math.nan,
                   calmar=(out["annual_return"] / -out["max_drawdown"]) if out["max_drawdown"] < 0 else math.nan,
                   daily_win_rate=float((r > 0).mean()), var_95=float(r.quantile(0.05)))
        curve = (1 + r).cumprod()
        dd = curve / curve.cummax().clip(lower=1.0) - 1
        trough = dd.idxmin()
        peak = curve.loc[:trough].idxmax() if curve.loc[:trough].max() >= 1 else self.daily.index[0]
        out.update(max_drawdown_start=peak, max_drawdown_end=trough)
        if "benchmark_returns" in self.daily.columns:
            active = r - self.daily["benchmark_returns"].astype(float)
            out["tracking_error"] = active.std(ddof=1) * math.sqrt(YEAR)
        return pd.Series(out, name=self.title)

    def pyfolio_inputs(self):
        """(returns, positions, transactions) in pyfolio's input shapes."""
        returns = self.daily["returns"].rename("returns")
        values = {day: {p["sid"]: p["amount"] * p["last_sale_price"] for p in held}
                  for day, held in self.positions_by_day.items()}
        positions = pd.DataFrame.from_dict(values, orient="index").reindex(self.daily.index).fillna(0.0)
        positions["cash"] = self.daily["cash"]
        tx = [t for day in self._transactions_by_day(self.daily.index) for t in day]
        transactions = pd.DataFrame(tx, columns=["dt", "sid", "amount", "price", "commission", "order_id"])
        return returns, positions, transactions.set_index("dt")

    def pyfolio_full_tear_sheet(self, path=None):
        """Write the HTML report with the risk table to `path` (default: <title>_tear_sheet.html); without a path
        and with pyfolio installed, pyfolio's own create_full_tear_sheet."""
        if path is None:
            try:
                import pyfolio
            except ImportError:
                pyfolio = None
            if pyfolio is not None:
                returns, positions, transactions = self.pyfolio_inputs()
                return pyfolio.create_full_tear_sheet(returns, positions=positions, transactions=transactions)
            path = f"{_slug(self.title)}_tear_sheet.html"
        return self.render(path)

    def render(self, path=None, **kw):
        """BigQuant draws charts in the notebook; here: the HTML report (with the risk table) at `path`."""
        from pathlib import Path

        path = Path(path or f"{_slug(self.title)}_report.html")
        self.to_html(path)
        log.info("report written to %s", path)
        return path

    def to_html(self, path):
        path = super().to_html(path)
        text = path.read_text(encoding="utf-8")
        table = self.risk_analyze().to_frame("value").to_html(escape=True)
        from ..atomic import atomic_write_text

        atomic_write_text(path, text.replace("<h2>Equity</h2>", f"<h2>Risk</h2>{table}<h2>Equity</h2>", 1))
        return path


def _slug(text) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(text)).strip("_") or "backtest"
