"""Factor analysis of one panel column against forward returns (alphalens style, pure functions).

Timing: with the default 09:30 cutoff, row D of the panel holds news published before D's open, so a
strategy sees row D and trades at D's open. The forward return of row D at horizon h is therefore
open(D+h) / open(D) - 1, D+h being the h-th later date of the price table (price="close" for panels
built with a 15:00 cutoff). A missing bar (suspension) gives no return for that row: it is not counted.

The quantile bucketing, quantile means and turnover are alphalens-reloaded's (quantize_factor with
no_raise, mean_return_by_quantile undemeaned, quantile_turnover, factor_rank_autocorrelation) computed
vectorised here: alphalens buckets one session at a time (~1 s on 600 sessions) and takes ~1.4 s to
import, most of a nightly run's analysis stage. tests/test_analysis.py checks the numbers against it.
IC (Pearson, which alphalens lacks) and Rank IC (Spearman) are vectorised per-session correlations.
Sessions with fewer than `min_assets` instruments that have both a factor value and a return are left
out: a correlation of two points is always +-1.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..jsonsafe import json_safe

HORIZONS = (1, 5, 10)


def horizon_name(h: int) -> str:
    return f"{int(h)}D"


def forward_returns(bars: pd.DataFrame, horizons=HORIZONS, price: str = "open", instruments=None) -> pd.DataFrame:
    """Forward returns on a (datetime, instrument) index, one column per horizon ('1D', '5D', ...).

    bars: long table with datetime, instrument and the price column. Row D at horizon h is
    price(D+h) / price(D) - 1 over the dates of the table; NaN when either bar is missing. The index is
    every (date, instrument) pair of the table. instruments: keep only these (the whole table still
    gives the dates and is still checked).
    """
    need = ["datetime", "instrument", price]
    missing = [c for c in need if c not in bars.columns]
    if missing:
        raise GptquantError(f"price table: missing column(s) {', '.join(missing)} (columns: {', '.join(map(str, bars.columns))})")
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise GptquantError(f"horizons must be positive session counts, got {horizons}")
    day = pd.to_datetime(bars["datetime"]).dt.normalize()
    inst = bars["instrument"].astype(str)
    p = pd.to_numeric(bars[price], errors="coerce")
    bad = ~(p > 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise GptquantError(f"price table row {i + 1}: {price} must be a positive number, got {bars[price].iloc[i]!r}")
    d_code, dates = pd.factorize(day, sort=True)
    i_code, insts = pd.factorize(inst, sort=True)
    for code, what in ((d_code, "datetime"), (i_code, "instrument")):
        if (code < 0).any():
            raise GptquantError(f"price table row {int(np.flatnonzero(code < 0)[0]) + 1}: {what} is missing")
    key = d_code.astype(np.int64) * len(insts) + i_code
    order = np.argsort(key, kind="stable")
    dup = order[1:][key[order][1:] == key[order][:-1]]  # later bars of a repeated (date, instrument)
    if len(dup):
        i = int(dup.min())
        raise GptquantError(f"price table: more than one bar for {inst.iloc[i]} on {day.iloc[i].date()}")
    if instruments is not None:  # renumber the kept instruments' columns; other rows drop out
        keep = np.flatnonzero(insts.isin(pd.Index(instruments).astype(str)))
        col = np.full(len(insts), -1)
        col[keep] = np.arange(len(keep))
        insts, i_code = insts[keep], col[i_code]
    rows = i_code >= 0
    wide = np.full((len(dates), len(insts)), np.nan)  # sessions x instruments
    wide[d_code[rows], i_code[rows]] = p.to_numpy(dtype=float)[rows]
    out = np.full((len(dates), len(insts), len(horizons)), np.nan)  # one block: no copy into a frame
    for k, h in enumerate(horizons):
        out[:-h, :, k] = wide[h:] / wide[:-h] - 1.0
    return pd.DataFrame(out.reshape(-1, len(horizons)), columns=[horizon_name(h) for h in horizons],
                        index=pd.MultiIndex.from_product([dates, insts], names=["datetime", "instrument"]))


def _qcut_levels(q: int) -> np.ndarray:
    """pandas.qcut's quantile levels: it nudges the ones not exact in binary up by one ulp."""
    levels = np.linspace(0, 1, q + 1)
    np.putmask(levels, q * levels != np.arange(q + 1), np.nextafter(levels, 1))
    return levels


def _quantize(data: pd.DataFrame, q: int) -> tuple[np.ndarray, np.ndarray]:
    """(quantile 1..q, kept) per row: each session's pd.qcut(factor, q, labels=False) + 1, as alphalens'
    quantize_factor(no_raise=True) gives it. A session whose bin edges repeat (ties) is not kept.

    Sessions of one size are bucketed together by the np.quantile call pandas.qcut makes, so the bin
    edges are the same floats as alphalens' one-session-at-a-time qcut.
    """
    x = data["factor"].to_numpy(dtype=float)
    day, _ = pd.factorize(data.index.get_level_values("date"))
    size = np.bincount(day)
    order = np.argsort(day, kind="stable")
    start = np.cumsum(size) - size
    levels = _qcut_levels(q)
    edges = np.empty((len(size), q + 1))
    for n in np.unique(size):
        same = np.flatnonzero(size == n)
        edges[same] = np.quantile(x[order[start[same][:, None] + np.arange(n)]], levels, axis=1, method="linear").T
    e = edges[day]
    label = (e < x[:, None]).sum(axis=1)  # qcut's searchsorted(edges, x, side="left")
    label[x == e[:, 0]] = 1  # the lowest edge belongs to the first bucket
    kept = ~(np.diff(edges, axis=1) == 0).any(axis=1)[day]
    return label.astype(np.int64), kept


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
    if r.index.is_unique and f.index.is_unique:  # forward_returns and panels: a hash look-up, ~40x the join
        pos = r.index.get_indexer(f.index)
        fac = np.full(len(r), np.nan)
        fac[pos[pos >= 0]] = f.to_numpy()[pos >= 0]
        rows = np.sort(pos[pos >= 0])  # the inner join's order: the returns table's
        data = r.iloc[rows].assign(factor=fac[rows])
    else:
        data = r.join(f, how="inner")
    data = data[np.isfinite(data["factor"])].dropna()
    size = data.groupby(level="date")["factor"].transform("size")
    data = data[size >= max(int(min_assets), 2)]
    if quantiles:
        label, kept = _quantize(data, int(quantiles))
        data = data[kept].assign(factor_quantile=label[kept])
    return data


def _pearson_by_date(day: np.ndarray, k: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-date Pearson correlation of two NaN-free arrays; day: date codes 0..k-1 (bincount sums, no groupby)."""
    size = np.bincount(day, minlength=k)
    xm = x - (np.bincount(day, x, k) / size)[day]
    ym = y - (np.bincount(day, y, k) / size)[day]
    den = np.sqrt(np.bincount(day, xm * xm, k) * np.bincount(day, ym * ym, k))
    return np.bincount(day, xm * ym, k) / np.where(den == 0.0, np.nan, den)


def _ranks_by_date(day: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Series(x).groupby(day).rank(): average ranks (ties share their mean), NaN stays NaN; two sorts instead
    of pandas' group rank (~3 s per column on 2M rows)."""
    n = len(x)
    if n == 0:
        return np.empty(0)
    pos = np.arange(n)
    by_value = np.argsort(x)  # NaN last; the order among equal values does not change average ranks
    codes = day.astype(np.int16) if n and day.max() < 2 ** 15 else day
    order = by_value[np.argsort(codes[by_value], kind="stable")]  # then by date: a radix sort on int16 codes
    xs, ds = x[order], day[order]
    new_date = np.r_[True, ds[1:] != ds[:-1]]
    new_tie = new_date | np.r_[True, xs[1:] != xs[:-1]]
    date_start = np.maximum.accumulate(np.where(new_date, pos, 0))
    tie_start = pos[new_tie]
    tie_mid = (tie_start + np.r_[tie_start[1:], n] - 1) / 2.0
    r = np.empty(n)
    r[order] = tie_mid[np.cumsum(new_tie) - 1] - date_start + 1
    r[np.isnan(x)] = np.nan
    return r


def factor_ic(factor: pd.Series, fwd: pd.DataFrame, min_assets: int = 5) -> pd.DataFrame:
    """IC (Pearson) and Rank IC (Spearman) per session: columns ('ic'|'rank_ic', horizon), index datetime.

    Rank IC is the Pearson correlation of the per-session ranks (average ranks for ties), which is
    Spearman's rho; computed vectorised because alphalens' per-session scipy calls are ~60x slower.
    """
    return _ic(_factor_data(factor, fwd, min_assets=min_assets), list(fwd.columns))


def _ic(data: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    day, days = pd.factorize(data.index.get_level_values("date"), sort=True)
    k, days = len(days), pd.Index(days, name="datetime")
    x = {c: data[c].to_numpy(dtype=float) for c in ["factor", *cols]}
    r = {c: _ranks_by_date(day, v) for c, v in x.items()}
    ic = pd.DataFrame({h: _pearson_by_date(day, k, x["factor"], x[h]) for h in cols}, index=days)
    rank = pd.DataFrame({h: _pearson_by_date(day, k, r["factor"], r[h]) for h in cols}, index=days)
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
    # alphalens' mean_return_by_quantile(demeaned=False): equal-weighted mean per (quantile, session),
    # then (by_date=False) the plain mean of those over sessions
    mean = data.groupby([data["factor_quantile"], data.index.get_level_values("date")], observed=True)[cols].mean()
    if not by_date:
        return mean.groupby(level=0).mean().rename_axis("quantile")
    return mean.rename_axis(["quantile", "datetime"])


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
    stub = pd.DataFrame({"1D": 0.0}, index=factor.index)  # bucketing needs no returns
    data = _factor_data(factor, stub, quantiles=q, min_assets=max(min_assets, q))
    if data.empty:
        return pd.DataFrame(columns=["top", "bottom", "rank_autocorr"], index=pd.DatetimeIndex([], name="datetime"))
    out = pd.DataFrame({
        "top": _quantile_turnover(data, q, period),
        "bottom": _quantile_turnover(data, 1, period),
        "rank_autocorr": _rank_autocorrelation(data, period),
    })
    return out.iloc[period:].rename_axis("datetime")


def _quantile_turnover(data: pd.DataFrame, quantile: int, period: int) -> pd.Series:
    """alphalens' quantile_turnover: per session holding that quantile, the share of its names that were
    not in it `period` such sessions before (NaN for the first `period`)."""
    rows = data["factor_quantile"].to_numpy() == quantile
    day, days = pd.factorize(data.index.get_level_values("date")[rows], sort=True)
    asset, assets = pd.factorize(data.index.get_level_values("asset")[rows])
    held = np.zeros((len(days), len(assets)), dtype=bool)  # sessions x names
    held[day, asset] = True
    new = np.full(len(days), np.nan)
    if len(days) > period:
        new[period:] = (held[period:] & ~held[:-period]).sum(axis=1)
    return pd.Series(new / held.sum(axis=1), index=days.rename("date"), name=quantile)


def _rank_autocorrelation(data: pd.DataFrame, period: int) -> pd.Series:
    """alphalens' factor_rank_autocorrelation: correlation of each session's factor ranks with the ranks
    `period` sessions before, over the names ranked on both."""
    day = pd.factorize(data.index.get_level_values("date"))[0]
    ranks = pd.Series(_ranks_by_date(day, data["factor"].to_numpy(dtype=float)), index=data.index).unstack("asset")
    return ranks.corrwith(ranks.shift(period), axis=1).rename(period)


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
    names = factor.index.get_level_values("instrument").unique()
    fwd_all = forward_returns(bars, range(1, max(horizons) + 1), price=price, instruments=names)
    decay = ic_decay(factor_ic(factor, fwd_all, min_assets=min_assets))
    fwd = fwd_all[cols]
    used = _factor_data(factor, fwd, min_assets=min_assets)
    ic = _ic(used, cols)
    summary = ic_summary(ic)
    data = _factor_data(factor, fwd, quantiles=quantiles, min_assets=max(min_assets, quantiles))
    qret = _quantile_means(data, cols, by_date=False)
    ls = _spread(_quantile_means(data, cols, by_date=True), quantiles)
    turnover = factor_turnover(factor, q=quantiles, min_assets=min_assets)
    dates = used.index.get_level_values("date")
    return json_safe({
        "column": column, "price": price, "horizons": cols, "quantiles": quantiles, "min_assets": min_assets,
        "coverage": {"panel_rows": len(factor), "rows_used": len(used), "sessions": dates.nunique(),
                     "instruments_without_prices": len(names.difference(fwd.index.unique("instrument"))),
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
