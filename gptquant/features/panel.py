"""Article features + news times and codes -> the point-in-time daily panel indexed by (datetime, instrument).

Point in time: an article belongs to the first XSHG session D whose cutoff (default 09:30 Asia/Shanghai)
comes after its publication time, so row D holds only news published after the previous session's cutoff
and before D's; weekend and holiday news rolls forward. A strategy trading at D's open may use row D.

Aggregates per feature column `f` (each article counted once per instrument it names):
- `f_mean`, `f_sum`: (weighted) mean and sum over the session's articles; NaN on sessions without news.
- `f_count`: number of articles with a value for `f` (unweighted); 0 on sessions without news.
- `f_maxabs`: the signed value with the largest magnitude (the session's strongest article); NaN without news.
- `f_ewm`: decayed sum  sum_a w_a * x_a * 0.5 ** (sessions since a / halflife); it carries news forward, so
  sessions after an instrument's news get a row (with count 0) for `carry` sessions (default ten half-lives,
  when the carried value is below 0.1 % of what it was) or until the panel's last session.

Articles with a high `ai_score` (machine-written) can be dropped (`ai_score_max`) or down-weighted
(`ai_weight=k`: weight (1 - ai_score) ** k). Every news row that does not reach the panel is returned in the
rejects table with its reason; nothing is dropped silently.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..market.calendar import DEFAULT_CUTOFF, _all_sessions, align_to_sessions
from ..text import split_codes

log = logging.getLogger(__name__)

AGGREGATES = ("mean", "sum", "count", "maxabs", "ewm")
REJECT_COLUMNS = ["row", "article_id", "datetime", "reason"]


def feature_columns(features: pd.DataFrame) -> list[str]:
    """Numeric (non-boolean) columns of an article-features table, other than article_id."""
    return [c for c in features.columns
            if c != "article_id" and pd.api.types.is_numeric_dtype(features[c]) and not pd.api.types.is_bool_dtype(features[c])]


def _codes(value) -> list[str]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return list(dict.fromkeys(split_codes(value)))


def _local_times(values: pd.Series) -> np.ndarray:
    """Naive Asia/Shanghai datetime64 values; unparseable ones become NaT (and are rejected by the caller)."""
    def local(ts):
        ts = pd.Timestamp(ts)
        return ts.tz_convert("Asia/Shanghai").tz_localize(None) if ts.tzinfo is not None else ts

    try:
        t = pd.to_datetime(values, errors="coerce", format=None if pd.api.types.is_datetime64_any_dtype(values) else "mixed")
        if t.dt.tz is not None:
            t = t.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
        return t.to_numpy(dtype="datetime64[ns]")
    except (ValueError, TypeError):  # e.g. strings with different UTC offsets: parse one by one
        out = []
        for v in values.tolist():
            try:
                out.append(local(v))
            except (ValueError, TypeError, OverflowError):
                out.append(pd.NaT)
        return pd.DatetimeIndex(out).as_unit("ns").to_numpy()


def _join_keys(features: pd.DataFrame, news: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """article_id of both tables in a comparable dtype (ints stay ints; anything mixed becomes str)."""
    a, b = features["article_id"], news["article_id"]
    if pd.api.types.is_integer_dtype(a) and pd.api.types.is_integer_dtype(b):
        return a.astype("int64"), b.astype("int64")
    return a.astype(str), b.astype(str)


def align_articles(features: pd.DataFrame, news: pd.DataFrame, cutoff: str = DEFAULT_CUTOFF, columns=None,
                   ai_score_max: float | None = None, ai_weight: float | None = None,
                   end=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (article, instrument) with its session, weight and feature values; plus the rejects.

    Returns (rows, rejects): rows has article_id, session, instrument, weight and the feature columns;
    rejects has row (the news table's `row`, else its 1-based position), article_id, datetime, reason:
    one row per news article that cannot be used.
    """
    for name, table, need in (("features", features, ("article_id",)), ("news", news, ("article_id", "datetime", "instruments"))):
        if not isinstance(table, pd.DataFrame):
            raise GptquantError(f"{name}: expected a DataFrame, got {type(table).__name__}")
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise GptquantError(f"{name} table: missing column(s) {', '.join(missing)} (columns: {', '.join(map(str, table.columns))})")
    columns = list(columns) if columns is not None else feature_columns(features)
    if not columns:
        raise GptquantError("features table: no numeric feature columns to aggregate")
    for c in columns:
        if c not in features.columns:
            raise GptquantError(f"features table: no column '{c}' (columns: {', '.join(map(str, features.columns))})")
        if not pd.api.types.is_numeric_dtype(features[c]):
            raise GptquantError(f"features table: column '{c}' is not numeric ({features[c].dtype})")
    if (ai_score_max is not None or ai_weight is not None) and "ai_score" not in features.columns:
        raise GptquantError("features table: ai_score_max/ai_weight need an 'ai_score' column")
    fkey, nkey = _join_keys(features, news)
    dup = fkey[fkey.duplicated()]
    if len(dup):
        raise GptquantError(f"features table: article_id {dup.iloc[0]!r} appears more than once")
    dup = nkey[nkey.duplicated()]
    if len(dup):
        raise GptquantError(f"news table: article_id {dup.iloc[0]!r} appears more than once")

    keep = list(dict.fromkeys(columns + (["ai_score"] if "ai_score" in features.columns and (ai_score_max is not None or ai_weight is not None) else [])))
    feats = features[keep].set_axis(pd.Index(fkey.to_numpy(), name="article_id"), axis=0)
    arts = pd.DataFrame({"article_id": nkey.to_numpy(), "datetime": _local_times(news["datetime"])})
    arts["session"] = align_to_sessions(arts["datetime"], cutoff)
    arts["instruments"] = [_codes(v) for v in news["instruments"].tolist()]

    first = _all_sessions()[0]
    reason = pd.Series("", index=arts.index, dtype=object)
    has_feat = arts["article_id"].isin(feats.index)
    reason[~has_feat] = "no features for this article_id"
    reason[(reason == "") & arts["datetime"].isna()] = "missing or unparseable datetime"
    reason[(reason == "") & (arts["datetime"] < first)] = f"before the XSHG calendar's first session {first.date()}"
    reason[(reason == "") & arts["session"].isna()] = "after the XSHG calendar's last session"
    if end is not None:
        reason[(reason == "") & (arts["session"] > pd.Timestamp(end).normalize())] = f"session after end {pd.Timestamp(end).date()}"
    reason[(reason == "") & (arts["instruments"].str.len() == 0)] = "no instrument codes"
    if ai_score_max is not None:
        ai = arts["article_id"].map(feats["ai_score"])
        reason[(reason == "") & (ai > ai_score_max)] = f"ai_score above {ai_score_max}"
    bad = reason != ""
    rows_no = news["row"].to_numpy() if "row" in news.columns else np.arange(1, len(news) + 1)
    rejects = pd.DataFrame({"row": rows_no[bad.to_numpy()], "article_id": arts.loc[bad, "article_id"].to_numpy(), "datetime": arts.loc[bad, "datetime"].to_numpy(),
                            "reason": reason[bad].astype(str).to_numpy()}, columns=REJECT_COLUMNS)

    used = arts.loc[~bad, ["article_id", "session", "instruments"]].explode("instruments").rename(columns={"instruments": "instrument"})
    rows = used.join(feats, on="article_id").reset_index(drop=True)
    rows["instrument"] = rows["instrument"].astype(str)
    if ai_weight is not None:
        if ai_weight < 0:
            raise GptquantError(f"ai_weight must be >= 0, got {ai_weight}")
        rows["weight"] = (1.0 - rows["ai_score"].clip(0.0, 1.0).fillna(0.0)) ** ai_weight
    else:
        rows["weight"] = 1.0
    return rows[["article_id", "session", "instrument", "weight", *columns]], rejects


def _decayed_sums(values: np.ndarray, lam: float) -> np.ndarray:
    """Row-wise recursion S[t] = lam * S[t-1] + values[t] over a (sessions x instruments) grid."""
    out = np.empty_like(values)
    acc = np.zeros(values.shape[1:])
    for t in range(values.shape[0]):
        acc = lam * acc + values[t]
        out[t] = acc
    return out


def build_panel(features: pd.DataFrame, news: pd.DataFrame, cutoff: str = DEFAULT_CUTOFF, aggregates=AGGREGATES,
                halflife: float = 3, columns=None, ai_score_max: float | None = None, ai_weight: float | None = None,
                start=None, end=None, carry: int | None = None, return_rejects: bool = False):
    """The daily panel: a DataFrame indexed by (datetime, instrument), sorted, with `<feature>_<aggregate>` columns.

    features: article_id + numeric feature columns (the scorer's output); news: article_id, datetime
    (naive = Asia/Shanghai), instruments (list of codes). Articles of sessions before `start` still feed
    the carried `_ewm` value; rows are kept for sessions in [start, end]. Rejected news articles are logged
    and, with return_rejects=True, returned: `(panel, rejects)`.
    """
    aggregates = tuple(aggregates)
    unknown = [a for a in aggregates if a not in AGGREGATES]
    if unknown or not aggregates:
        raise GptquantError(f"unknown aggregate(s) {unknown}; choose from {', '.join(AGGREGATES)}")
    if not (halflife > 0):
        raise GptquantError(f"halflife must be > 0 sessions, got {halflife}")
    rows, rejects = align_articles(features, news, cutoff=cutoff, columns=columns, ai_score_max=ai_score_max,
                                   ai_weight=ai_weight, end=end)
    cols = [c for c in rows.columns if c not in ("article_id", "session", "instrument", "weight")]
    if len(rejects):
        counts = rejects["reason"].value_counts()
        log.warning("panel: %d of %d news articles not used (%s)", len(rejects), len(news),
                    "; ".join(f"{r}: {n}" for r, n in counts.items()))

    w = rows["weight"]
    key = [rows["session"].rename("datetime"), rows["instrument"]]
    parts = {}
    for c in cols:
        x = rows[c].astype("float64")
        ok = x.notna()
        wx = (w * x).where(ok)
        g_wx, g_w, g_n = wx.groupby(key), w.where(ok).groupby(key), ok.groupby(key)
        parts[f"{c}_sum"] = g_wx.sum(min_count=1)
        if "mean" in aggregates:
            parts[f"{c}_mean"] = parts[f"{c}_sum"] / g_w.sum(min_count=1).replace(0.0, np.nan)
        if "count" in aggregates:
            parts[f"{c}_count"] = g_n.sum().astype("int64")
        if "maxabs" in aggregates:
            xs = x[ok]
            idx = xs.abs().groupby([k[ok] for k in key]).idxmax()
            parts[f"{c}_maxabs"] = pd.Series(xs.loc[idx.to_numpy()].to_numpy(), index=idx.index)
    daily = pd.DataFrame(parts)
    daily.index = daily.index.set_names(["datetime", "instrument"])

    out = [daily]
    if "ewm" in aggregates and len(daily):
        out.append(_ewm(daily, cols, halflife, carry, end))
    panel = pd.concat(out, axis=1) if len(out) > 1 else daily
    order = [f"{c}_{a}" for c in cols for a in aggregates]
    panel = panel.reindex(columns=order)
    if "count" in aggregates:
        for c in cols:
            panel[f"{c}_count"] = panel[f"{c}_count"].fillna(0).astype("int64")
    if start is not None:
        panel = panel[panel.index.get_level_values("datetime") >= pd.Timestamp(start).normalize()]
    if end is not None:
        panel = panel[panel.index.get_level_values("datetime") <= pd.Timestamp(end).normalize()]
    panel = panel.sort_index()
    if not isinstance(panel.index, pd.MultiIndex):  # empty input
        panel.index = pd.MultiIndex.from_arrays([pd.DatetimeIndex([]), pd.Index([], dtype=str)], names=["datetime", "instrument"])
    panel.attrs["gptquant_panel"] = {"cutoff": str(cutoff), "halflife": float(halflife), "articles_in": int(len(news)),
                                     "articles_used": int(rows["article_id"].nunique()), "articles_rejected": int(len(rejects))}
    return (panel, rejects) if return_rejects else panel


def _ewm(daily: pd.DataFrame, cols: list[str], halflife: float, carry: int | None, end) -> pd.DataFrame:
    """Decayed sums on the dense session grid, kept `carry` sessions past each instrument's latest news."""
    sessions = _all_sessions()
    first, last = daily.index.get_level_values("datetime").min(), daily.index.get_level_values("datetime").max()
    if end is not None:
        last = max(last, sessions[sessions <= pd.Timestamp(end).normalize()][-1])
    grid = sessions[(sessions >= first) & (sessions <= last)]
    lam = 0.5 ** (1.0 / halflife)
    carry = int(math.ceil(10 * halflife)) if carry is None else int(carry)

    news_days = daily[[f"{c}_sum" for c in cols]].notna().any(axis=1)
    seen = news_days.astype(float).unstack("instrument").reindex(grid).fillna(0.0).to_numpy()
    # sessions since the latest news, per cell (inf before the first news)
    pos = np.arange(len(grid), dtype=float)[:, None]
    last_news = np.where(seen > 0, pos, np.nan)
    last_news = pd.DataFrame(last_news).ffill().to_numpy()
    keep = (pos - last_news) <= carry

    instruments = news_days.unstack("instrument").columns
    values = {}
    for c in cols:
        wide = daily[f"{c}_sum"].unstack("instrument").reindex(index=grid, columns=instruments)
        has = wide.notna().to_numpy()
        started = np.cumsum(has, axis=0) > 0
        dec = _decayed_sums(np.nan_to_num(wide.to_numpy(), nan=0.0), lam)
        values[f"{c}_ewm"] = np.where(started & keep, dec, np.nan)
    ii, jj = np.nonzero(keep)
    idx = pd.MultiIndex.from_arrays([grid[ii], instruments[jj].astype(str)], names=["datetime", "instrument"])
    return pd.DataFrame({k: v[ii, jj] for k, v in values.items()}, index=idx)


def to_qlib(panel: pd.DataFrame, column: str = "sentiment_ewm") -> pd.DataFrame:
    """A one-column `score` frame on a (datetime, instrument) index with Qlib's codes (600519.SH -> SH600519)."""
    if column not in panel.columns:
        raise GptquantError(f"panel has no column '{column}' for the Qlib score (columns: {', '.join(map(str, panel.columns))})")
    score = panel[column].dropna()
    dt = score.index.get_level_values("datetime")
    inst = [f"{c[-2:]}{c[:-3]}" for c in score.index.get_level_values("instrument")]
    index = pd.MultiIndex.from_arrays([dt, pd.Index(inst, dtype=str)], names=["datetime", "instrument"])
    return pd.DataFrame({"score": score.to_numpy(dtype="float64")}, index=index).sort_index()


def write_parquet(frame: pd.DataFrame, path) -> None:
    """Write Parquet atomically: a temp file in the target's directory, then os.replace."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
