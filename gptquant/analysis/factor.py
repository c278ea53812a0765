"""Factor analysis of one panel column against forward returns (alphalens style, pure functions).

Timing: with the default 09:30 cutoff, row D of the panel holds news published before D's open, so a
strategy sees row D and trades at D's open. The forward return of row D at horizon h is therefore
open(D+h) / open(D) - 1, D+h being the h-th later date of the price table (price="close" for panels
built with a 15:00 cutoff). A missing bar (suspension) gives no return for that row: it is not counted.

alphalens-reloaded does the quantile bucketing, the quantile returns and the turnover; IC (Pearson, which
alphalens lacks) and Rank IC (Spearman) are vectorised per-session correlations here.
Sessions with fewer than `min_assets` instruments that have both a factor value and a return are left
out: a correlation of two points is always +-1.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import GptquantError, require

HORIZONS = (1, 5, 10)


def _alphalens():
    return require("alphalens", "analysis", "factor analysis (pip install alphalens-reloaded)")


def horizon_name(h: int) -> str:
    return f"{int(h)}D"


def forward_returns(bars: pd.DataFrame, horizons=HORIZONS, price: str = "open") -> pd.DataFrame:
    """Forward returns on a (datetime, instrument) index, one column per horizon ('1D', '5D', ...).

    bars: long table with datetime, instrument and the price column. Row D at horizon h is
    price(D+h) / price(D) - 1 over the dates of the table; NaN when either bar is missing.
    """
    need = ["datetime", "instrument", price]
    missing = [c for c in need if c not in bars.columns]
    if missing:
        raise GptquantError(f"price table: missing column(s) {', '.join(missing)} (columns: {', '.join(map(str, bars.columns))})")
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise GptquantError(f"horizons must be positive session counts, got {horizons}")
    df = bars[need].copy()
    df["datetime"] = pd.to_datetime(df["datetime"]).dt.normalize()
    df["instrument"] = df["instrument"].astype(str)
    p = pd.to_numeric(df[price], errors="coerce")
    bad = ~(p > 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise GptquantError(f"price table row {i + 1}: {price} must be a positive number, got {bars[price].iloc[i]!r}")
    dup = df.duplicated(["datetime", "instrument"])
    if dup.any():
        r = df[dup].iloc[0]
        raise GptquantError(f"price table: more than one bar for {r['instrument']} on {r['datetime'].date()}")
    wide = p.set_axis(pd.MultiIndex.from_frame(df[["datetime", "instrument"]])).unstack("instrument").sort_index()
    out = {horizon_name(h): (wide.shift(-h) / wide - 1.0).stack() for h in horizons}
    fwd = pd.DataFrame(out)
    fwd.index = fwd.index.set_names(["datetime", "instrument"])
    return fwd.sort_index()


def _factor_data(factor: pd.Series, fwd: pd.DataFrame, quantiles: int | None = None, min_assets: int = 5) -> pd.DataFrame:
    """alphalens' factor_data: (date, asset) index, forward-return columns, `factor` and `factor_quantile`.

    Rows need the factor and every horizon's return; sessions with fewer than min_assets rows go.
    """
    if not isinstance(factor.index, pd.MultiIndex) or factor.index.nlevels != 2:
        raise GptquantError("factor must be a Series on a (datetime, instrument) index")
    f = factor.astype("float64").rename("factor")
    f.index = f.index.set_names(["date", "asset"])
    r = fwd.copy()
    r.index = r.index.set_names(["date", "asset"])
    data = r.join(f, how="inner")
    data = data[np.isfinite(data["factor"])].dropna()
    size = data.groupby(level="date")["factor"].transform("size")
    data = data[size >= max(int(min_assets), 2)]
    if quantiles:
        al = _alphalens()
        q = al.utils.quantize_factor(data, quantiles=quantiles, no_raise=True)
        data = data.assign(factor_quantile=q).dropna(subset=["factor_quantile"])
        data["factor_quantile"] = data["factor_quantile"].astype("int64")
    return data


def _pearson_by_date(x: pd.Series, y: pd.Series) -> pd.Series:
    g = x.index.get_level_values(0)
    xm = x - x.groupby(g).transform("mean")
    ym = y - y.groupby(g).transform("mean")
    num = (xm * ym).groupby(g).sum()
    den = np.sqrt((xm * xm).groupby(g).sum() * (ym * ym).groupby(g).sum())
    return (num / den.replace(0.0, np.nan)).rename_axis("datetime")


def factor_ic(factor: pd.Series, fwd: pd.DataFrame, min_assets: int = 5) -> pd.DataFrame:
    """IC (Pearson) and Rank IC (Spearman) per session: columns ('ic'|'rank_ic', horizon), index datetime.

    Rank IC is the Pearson correlation of the per-session ranks (average ranks for ties), which is
    Spearman's rho; computed vectorised because alphalens' per-session scipy calls are ~60x slower.
    """
    data = _factor_data(factor, fwd, min_assets=min_assets)
    cols = list(fwd.columns)
    ranks = data.groupby(level="date").rank()
    ic = pd.DataFrame({h: _pearson_by_date(data["factor"], data[h]) for h in cols})
    rank = pd.DataFrame({h: _pearson_by_date(ranks["factor"], ranks[h]) for h in cols})
    out = pd.concat({"ic": ic, "rank_ic": rank}, axis=1)
    out.index = pd.DatetimeIndex(out.index, name="datetime")
    return out


def ic_summary(ic: pd.DataFrame) -> pd.DataFrame:
    """mean, std, ICIR (mean/std per session), t-stat (ICIR * sqrt(n)) and n for every IC column."""
    rows = {}
    for col in ic.columns:
        s = ic[col].dropna()
        n = len(s)
        mean = s.mean() if n else np.nan
        std = s.std(ddof=1) if n > 1 else np.nan
        ir = mean / std if std and std > 0 else np.nan
        rows[col] = {"mean": mean, "std": std, "icir": ir, "t_stat": ir * math.sqrt(n) if n else np.nan, "n": n}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["kind", "horizon"])
    out["n"] = out["n"].astype("int64")
    return out


def _quantile_means(data: pd.DataFrame, cols: list[str], by_date: bool) -> pd.DataFrame:
    if data.empty:
        return pd.DataFrame(columns=cols)
    mean, _ = _alphalens().performance.mean_return_by_quantile(data, by_date=by_date, demeaned=False)
    return mean[cols].rename_axis(["quantile", "datetime"] if by_date else "quantile")


def _spread(by_date: pd.DataFrame, q: int) -> pd.DataFrame:
    if by_date.empty:
        return pd.DataFrame(columns=list(by_date.columns), index=pd.DatetimeIndex([], name="datetime"))
    return (by_date.xs(q, level="quantile") - by_date.xs(1, level="quantile")).dropna(how="all")


def quantile_returns(factor: pd.Series, fwd: pd.DataFrame, q: int = 5, min_assets: int = 5, by_date: bool = False) -> pd.DataFrame:
    """Mean forward return of each factor quantile (1 = lowest), not demeaned.

    by_date=False: the mean over sessions of each session's equal-weighted quantile mean (index quantile).
    by_date=True: one row per (quantile, datetime).
    """
    data = _factor_data(factor, fwd, quantiles=q, min_assets=max(min_assets, q))
    return _quantile_means(data, list(fwd.columns), by_date)


def long_short(factor: pd.Series, fwd: pd.DataFrame, q: int = 5, min_assets: int = 5) -> pd.DataFrame:
    """Per session: top-quantile mean return minus bottom-quantile mean return (a 100 % long, 100 % short
    book; alphalens' own spread halves this)."""
    return _spread(quantile_returns(factor, fwd, q=q, min_assets=min_assets, by_date=True), q)


def factor_turnover(factor: pd.Series, q: int = 5, period: int = 1, min_assets: int = 5) -> pd.DataFrame:
    """Per session: share of the top and bottom quantiles' names that are new since `period` sessions
    before (on the panel's sessions), and the factor's rank autocorrelation at that lag."""
    al = _alphalens()
    stub = pd.DataFrame({"1D": 0.0}, index=factor.index)  # bucketing needs no returns
    data = _factor_data(factor, stub, quantiles=q, min_assets=max(min_assets, q))
    if data.empty:
        return pd.DataFrame(columns=["top", "bottom", "rank_autocorr"], index=pd.DatetimeIndex([], name="datetime"))
    out = pd.DataFrame({
        "top": al.performance.quantile_turnover(data["factor_quantile"], q, period),
        "bottom": al.performance.quantile_turnover(data["factor_quantile"], 1, period),
        "rank_autocorr": al.performance.factor_rank_autocorrelation(data, period),
    })
    return out.iloc[period:].rename_axis("datetime")


def ic_decay(ic: pd.DataFrame) -> pd.DataFrame:
    """Mean IC and Rank IC by horizon in sessions, from factor_ic's output (index: horizon)."""
    mean = ic.mean()
    out = pd.DataFrame({kind: mean[kind] for kind in ("ic", "rank_ic")})
    out.index = [int(str(h)[:-1]) for h in out.index]
    return out.sort_index().rename_axis("horizon")


def analyze(panel: pd.DataFrame, column: str, bars: pd.DataFrame, horizons=HORIZONS, quantiles: int = 5,
            price: str = "open", min_assets: int = 5) -> dict:
    """Every figure for one panel column, as plain JSON-ready Python (NaN -> None).

    The IC decay curve covers every horizon from 1 to max(horizons).
    """
    if column not in panel.columns:
        raise GptquantError(f"panel has no column '{column}' (columns: {', '.join(map(str, panel.columns))})")
    if list(panel.index.names) != ["datetime", "instrument"]:
        raise GptquantError(f"panel index must be (datetime, instrument), got {list(panel.index.names)}")
    factor = panel[column].dropna()
    horizons = sorted({int(h) for h in horizons})
    cols = [horizon_name(h) for h in horizons]
    fwd_all = forward_returns(bars, range(1, max(horizons) + 1), price=price)
    decay = ic_decay(factor_ic(factor, fwd_all, min_assets=min_assets))
    fwd = fwd_all[cols]
    ic = factor_ic(factor, fwd, min_assets=min_assets)
    summary = ic_summary(ic)
    data = _factor_data(factor, fwd, quantiles=quantiles, min_assets=max(min_assets, quantiles))
    qret = _quantile_means(data, cols, by_date=False)
    ls = _spread(_quantile_means(data, cols, by_date=True), quantiles)
    turnover = factor_turnover(factor, q=quantiles, min_assets=min_assets)
    used = _factor_data(factor, fwd, min_assets=min_assets)
    dates = used.index.get_level_values("date")
    return _plain({
        "column": column, "price": price, "horizons": cols, "quantiles": quantiles, "min_assets": min_assets,
        "coverage": {"panel_rows": len(factor), "rows_used": len(used), "sessions": dates.nunique(),
                     "instruments_without_prices": len(set(factor.index.get_level_values("instrument"))
                                                       - set(fwd.index.get_level_values("instrument"))),
                     "instruments": used.index.get_level_values("asset").nunique(),
                     "first": dates.min() if len(dates) else None, "last": dates.max() if len(dates) else None},
        "ic_summary": {kind: {h: {k: (int(v) if k == "n" else v) for k, v in summary.loc[(kind, h)].items()} for h in cols}
                       for kind in ("ic", "rank_ic")},
        "ic": {kind: {h: ic[(kind, h)].to_dict() for h in cols} for kind in ("ic", "rank_ic")},
        "quantile_returns": {h: qret[h].to_dict() for h in qret.columns},
        "long_short": {"mean": ls.mean().to_dict(), "by_session": {h: ls[h].to_dict() for h in ls.columns}},
        "turnover": {"mean": turnover.mean().to_dict(), "by_session": {c: turnover[c].to_dict() for c in turnover.columns}},
        "ic_decay": {kind: decay[kind].to_dict() for kind in decay.columns},
    })


def _plain(obj):
    """Nested dicts/lists with str keys, floats (NaN -> None), ints and ISO dates only."""
    if isinstance(obj, dict):
        return {_key(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (pd.Timestamp, np.datetime64)):
        return None if pd.isna(obj) else pd.Timestamp(obj).date().isoformat()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _key(k) -> str:
    if isinstance(k, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(k).date().isoformat()
    if isinstance(k, np.generic):
        k = k.item()
    return str(k)
