"""What a report and the strategies look at: the panel column to analyse and trade, and the article-level
view behind the report's headlines."""
from __future__ import annotations

import re

from ..errors import GptquantError


def choose_column(panel, wanted: str = "auto") -> tuple[str, list[str]]:
    """The panel column to analyse and trade, and notes for the report."""
    if wanted != "auto":
        if wanted not in panel.columns:
            raise GptquantError(f"[analysis] column {wanted!r} is not in the panel (columns: {', '.join(panel.columns)})")
        return wanted, []
    for c in ("sentiment_ewm", "nll_mean_ewm"):
        if c in panel.columns:
            notes = [] if c.startswith("sentiment") else [
                "the bundle has no sentiment head: the panel has no sentiment column, so analysis and backtests use "
                f"{c} (a language-model statistic) instead"]
            return c, notes
    raise GptquantError(f"panel has neither sentiment_ewm nor nll_mean_ewm; set [analysis] column (columns: {', '.join(panel.columns)})")


def article_view(feats, news, column: str, cutoff: str):
    """Article-level table for the report: session, instruments, text and the base feature of `column`."""
    import pandas as pd

    from ..market.calendar import align_to_sessions

    base = re.sub(r"_(mean|sum|count|maxabs|ewm)$", "", column)
    feature = base if base in feats.columns else ("sentiment" if "sentiment" in feats.columns else "nll_mean")
    view = pd.DataFrame({"article_id": news["article_id"].to_numpy(), "session": align_to_sessions(news["datetime"], cutoff),
                         "datetime": news["datetime"].to_numpy(), "instruments": [", ".join(c) for c in news["instruments"]],
                         "text": news["text"].to_numpy(), "value": feats[feature].to_numpy(dtype="float64")})
    view.attrs["feature"] = feature
    return view
