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
  when the carried value is below 0.1 % of what it was) or until the panel's last session: `end` when
  given (news after it is rejected), else the latest article's session.

Articles with a high `ai_score` (machine-written) can be dropped (`ai_score_max`) or down-weighted
(`ai_weight=k`: weight (1 - ai_score) ** k). Every news row that does not reach the panel is returned in the
rejects table with its reason; nothing is dropped silently.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import GptquantError
from ..market.calendar import DEFAULT_CUTOFF, _all_sessions, align_to_sessions
from ..runtime.dates import parse_datetimes
from ..text import split_codes

log = logging.getLogger(__name__)

REJECT_COLUMNS = ["row", "article_id", "datetime", "reason"]


def feature_columns(features: pd.DataFrame) -> list[str]:
    """Numeric (non-boolean) columns of an article-features table, other than article_id."""
    return [c for c in features.columns
            if c != "article_id" and pd.api.types.is_numeric_dtype(features[c]) and not pd.api.types.is_bool_dtype(features[c])]


_CANONICAL = re.compile(r"\d{6}\.(?:SH|SZ|BJ)")


def _codes(value) -> list[str]:
    """Canonical codes of one news row; lists already canonical (read_news output) skip re-parsing."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list) and all(isinstance(v, str) and _CANONICAL.fullmatch(v) for v in value):
        return list(dict.fromkeys(value))
    return list(dict.fromkeys(split_codes(value)))


def _all_codes(values: list) -> list[list[str]]:
    """_codes of every row; a market repeats the same few thousand code lists, so each is checked once."""
    done: dict = {}
    out = []
    for v in values:
        key = tuple(v) if isinstance(v, (list, np.ndarray)) else v
        try:
            codes = done.get(key)
        except TypeError:  # unhashable contents: check this row on its own
            out.append(_codes(v))
            continue
        if codes is None:
            codes = done[key] = _codes(v)
        out.append(list(codes))
    return out


def _join_keys(features: pd.DataFrame, news: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """article_id of both tables in a comparable dtype (ints stay ints; anything mixed becomes str)."""
    a, b = features["article_id"], news["article_id"]
    if pd.api.types.is_integer_dtype(a) and pd.api.types.is_integer_dtype(b):
        return a.astype("int64"), b.astype("int64")
    return a.astype(str), b.astype(str)


def align_articles(features: pd.DataFrame, news: pd.DataFrame, cutoff: str = DEFAULT_CUTOFF, columns=None,
                   ai_score_max: float | None = None, ai_weight: float | None = None,
                   end=None, extra_holidays=None) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    times, why = parse_datetimes(news["datetime"], required=False)  # the news reader's rules, vectorised
    arts = pd.DataFrame({"article_id": nkey.to_numpy(), "datetime": times.to_numpy()})
    arts["session"] = align_to_sessions(arts["datetime"], cutoff, extra_holidays)
    arts["instruments"] = _all_codes(news["instruments"].tolist())

    first = _all_sessions(extra_holidays)[0]
    reason = pd.Series("", index=arts.index, dtype=object)
    has_feat = pd.Series(feats.index.get_indexer(arts["article_id"]) >= 0, index=arts.index)  # unique ids: a hash
    # look-up (Series.isin on Arrow strings loops in Python: 4.7 s for 300k ids)
    reason[~has_feat] = "no features for this article_id"
    no_time = (reason == "") & arts["datetime"].isna()
    reason[no_time] = [why[i] or "missing or unparseable datetime" for i in np.flatnonzero(no_time.to_numpy())]
    reason[(reason == "") & (arts["datetime"] < first)] = f"before the XSHG calendar's first session {first.date()}"
    reason[(reason == "") & arts["session"].isna()] = "after the XSHG calendar's last session"
    if end is not None:
        reason[(reason == "") & (arts["session"] > pd.Timestamp(end).normalize())] = f"session after end {pd.Timestamp(end).date()}"
    reason[(reason == "") & (arts["instruments"].map(len) == 0)] = "no instrument codes"
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


@dataclass
class _Cells:
    """One grouping of the (article, instrument) rows by panel cell, shared by every aggregate: per news cell
    the weighted sums `wx`, weights `w`, counts `n`, highs and lows of each feature; the decayed sums `ewm`
    already on the output cells (news cells plus the cells `_ewm` carries news into); where the news cells
    sit among the output cells (`at`) and how many there are."""
    wx: pd.DataFrame
    w: pd.DataFrame
    n: pd.DataFrame
    hi: pd.DataFrame
    lo: pd.DataFrame
    ewm: dict
    at: np.ndarray
    size: int

    def spread(self, values, fill=np.nan) -> np.ndarray:
        """Per-news-cell values on the output cells; `fill` (NaN, or 0 for counts) elsewhere."""
        full = np.full(self.size, fill, dtype=np.asarray(values).dtype if fill == 0 else "float64")
        full[self.at] = values
        return full


def _mean(cells: _Cells, c: str) -> np.ndarray:
    w = cells.w[c].to_numpy()
    return cells.spread(cells.wx[c].to_numpy() / np.where(w > 0, w, np.nan))


def _sum(cells: _Cells, c: str) -> np.ndarray:
    return cells.spread(cells.wx[c].to_numpy())


def _count(cells: _Cells, c: str) -> np.ndarray:
    return cells.spread(cells.n[c].to_numpy(), fill=0)


def _maxabs(cells: _Cells, c: str) -> np.ndarray:
    hi, lo = cells.hi[c].to_numpy(), cells.lo[c].to_numpy()
    return cells.spread(np.where(np.abs(hi) >= np.abs(lo), hi, lo))


def _ewm(cells: _Cells, c: str) -> np.ndarray:
    return cells.ewm[c]


# The panel's aggregates, {suffix: function(cells, feature) -> values on the output cells}; what each means
# is in the module docstring. Naming rule: feature `f` aggregated by `suffix` is the column `f_suffix`.
AGGREGATES = {"mean": _mean, "sum": _sum, "count": _count, "maxabs": _maxabs, "ewm": _ewm}


def panel_column(feature: str, suffix: str) -> str:
    """The panel column of `feature` under the aggregate `suffix`: nll_mean, ewm -> nll_mean_ewm."""
    return f"{feature}_{suffix}"


def build_panel(features: pd.DataFrame, news: pd.DataFrame, cutoff: str = DEFAULT_CUTOFF, aggregates=AGGREGATES,
                halflife: float = 3, columns=None, ai_score_max: float | None = None, ai_weight: float | None = None,
                start=None, end=None, carry: int | None = None, return_rejects: bool = False, extra_holidays=None):
    """The daily panel: a DataFrame indexed by (datetime, instrument), sorted, with `<feature>_<aggregate>` columns.

    features: article_id + numeric feature columns (the scorer's output); news: article_id, datetime
    (naive = Asia/Shanghai), instruments (list of codes). Articles of sessions before `start` still feed
    the carried `_ewm` value; rows are kept for sessions in [start, end]. Rejected news articles are logged
    and, with return_rejects=True, returned: `(panel, rejects)`. extra_holidays: dates that are not
    sessions although the XSHG calendar (or, past its horizon, the weekday rule) says they are.
    """
    aggregates = tuple(aggregates)
    unknown = [a for a in aggregates if a not in AGGREGATES]
    if unknown or not aggregates:
        raise GptquantError(f"unknown aggregate(s) {unknown}; choose from {', '.join(AGGREGATES)}")
    if not (halflife > 0):
        raise GptquantError(f"halflife must be > 0 sessions, got {halflife}")
    rows, rejects = align_articles(features, news, cutoff=cutoff, columns=columns, ai_score_max=ai_score_max,
                                   ai_weight=ai_weight, end=end, extra_holidays=extra_holidays)
    cols = [c for c in rows.columns if c not in ("article_id", "session", "instrument", "weight")]
    if len(rejects):
        counts = rejects["reason"].value_counts()
        log.warning("panel: %d of %d news articles not used (%s)", len(rejects), len(news),
                    "; ".join(f"{r}: {n}" for r, n in counts.items()))

    sessions = _all_sessions(extra_holidays)
    if rows.empty:
        grid, instruments = sessions[:0], pd.Index([], dtype=str)
    else:
        last = rows["session"].max()
        if end is not None:
            last = max(last, sessions[sessions <= pd.Timestamp(end).normalize()][-1])
        grid = sessions[(sessions >= rows["session"].min()) & (sessions <= last)]
    t = grid.searchsorted(rows["session"].to_numpy())
    j, instruments = pd.factorize(rows["instrument"], sort=True)
    cell = t * max(len(instruments), 1) + j  # one int per (session, instrument), sorted like the panel

    x = rows[cols].astype("float64")
    ok = x.notna()
    w = rows["weight"].to_numpy()[:, None]
    frame = pd.concat({"wx": x * w, "w": ok * w, "n": ok.astype("int64"), "x": x}, axis=1)
    g = frame.groupby(cell)
    sums, highs, lows = g.sum(min_count=1), g.max(), g.min()  # one grouping, reused
    wx, ww, n, hi, lo = sums["wx"], sums["w"], sums["n"], highs["x"], lows["x"]
    news_cells = wx.index.to_numpy()

    if "ewm" in aggregates and len(news_cells):
        ewm, out_cells = _decayed_grid(wx, news_cells, len(grid), len(instruments), halflife, carry)
    else:
        ewm, out_cells = {c: np.full(len(news_cells), np.nan) for c in cols}, news_cells
    cells = _Cells(wx, ww, n, hi, lo, ewm, np.searchsorted(out_cells, news_cells), len(out_cells))
    data = {panel_column(c, a): AGGREGATES[a](cells, c) for c in cols for a in aggregates}
    nt = max(len(instruments), 1)
    index = pd.MultiIndex.from_arrays([grid[out_cells // nt], pd.Index(np.asarray(instruments)[out_cells % nt], dtype=str)],
                                      names=["datetime", "instrument"])
    panel = pd.DataFrame(data, index=index, columns=list(data))
    days = panel.index.get_level_values("datetime")
    if start is not None:
        panel = panel[days >= pd.Timestamp(start).normalize()]
    panel.attrs["gptquant_panel"] = {"cutoff": str(cutoff), "halflife": float(halflife), "articles_in": int(len(news)),
                                     "articles_used": int(rows["article_id"].nunique()), "articles_rejected": int(len(rejects))}
    return (panel, rejects) if return_rejects else panel


def _decayed_grid(wx: pd.DataFrame, news_cells: np.ndarray, n_sessions: int, n_instruments: int, halflife: float,
         carry: int | None) -> tuple[dict, np.ndarray]:
    """Decayed sums on the dense (session x instrument) grid, kept `carry` sessions past each instrument's
    latest news. Returns ({column: values on the kept cells}, kept cells as sorted flat indices)."""
    lam = 0.5 ** (1.0 / halflife)
    carry = int(math.ceil(10 * halflife)) if carry is None else int(carry)
    pos = np.arange(n_sessions, dtype=float)[:, None]
    last_news = np.full(n_sessions * n_instruments, np.nan)
    last_news[news_cells] = (news_cells // n_instruments).astype(float)
    last_news = pd.DataFrame(last_news.reshape(n_sessions, n_instruments)).ffill().to_numpy()
    keep = (pos - last_news) <= carry  # NaN (before the first news) compares False
    kept = np.flatnonzero(keep.ravel())
    out = {}
    for c in wx.columns:
        dense = np.zeros(n_sessions * n_instruments)
        has = np.zeros(n_sessions * n_instruments, dtype=bool)
        v = wx[c].to_numpy()
        dense[news_cells] = np.nan_to_num(v, nan=0.0)
        has[news_cells] = ~np.isnan(v)
        started = np.cumsum(has.reshape(n_sessions, n_instruments), axis=0) > 0
        dec = _decayed_sums(dense.reshape(n_sessions, n_instruments), lam)
        out[c] = np.where(started, dec, np.nan).ravel()[kept]
    return out, kept


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
    from ..atomic import atomic_write

    atomic_write(path, lambda tmp: frame.to_parquet(tmp))
