"""The article-feature contract between the exporter (gptquant.lm) and the scorer: column names and the
numpy reductions that make them from the graph's outputs. Torch-free; both sides import it from here, so
the scorer's rows and the exporter's parity check are computed by the same lines.

Every function returns {column name: array [n_articles]}; a column is made where its name is written.
"""
from __future__ import annotations

import numpy as np

RANK_BUCKETS = (10, 100, 1000)  # GLTR buckets: rank_top10 / rank_top100 / rank_top1000

# Article features (one row per article), per ARCHITECTURE.md; recorded in a bundle's manifest
BASE_FEATURES = (
    "n_tokens", "truncated", "nll_mean", "nll_std", "ppl", "entropy_mean",
    "rank_top10", "rank_top100", "rank_top1000",
)
STAT_COLUMNS = list(BASE_FEATURES) + ["logrank_mean", "fast_detect"]  # what a full graph's rows start with
SENTIMENT_ONLY_COLUMNS = ["n_tokens", "truncated"]  # a sentiment-only graph has no per-token outputs
POLAR_COLUMNS = ("sent_neg", "sent_neu", "sent_pos")

_POLARITY = {"neg": "sent_neg", "neu": "sent_neu", "pos": "sent_pos", "负": "sent_neg", "中": "sent_neu", "正": "sent_pos"}


def label_columns(labels: list[str] | None) -> list[str]:
    """Column per label of the sentiment head. Three labels become sent_neg/sent_neu/sent_pos: by name
    when the names say so (negative/neutral/positive in any order, or 负面/中性/正面), else by position."""
    if not labels:
        return []
    if len(labels) == 3:
        by_name = [_POLARITY.get(label.strip().lower()[:3]) or _POLARITY.get(label.strip()[:1]) for label in labels]
        if sorted(filter(None, by_name)) == list(POLAR_COLUMNS):
            return by_name
        return list(POLAR_COLUMNS)
    return [f"sent_{label}" for label in labels]


def sentiment_columns(labels: list[str] | None) -> list[str]:
    """The sentiment columns of a row, in order: three labels always as neg, neu, pos and `sentiment`."""
    if labels and len(labels) == 3:
        return [*POLAR_COLUMNS, "sentiment"]
    return label_columns(labels)


def feature_columns(full_graph: bool, labels: list[str] | None) -> list[str]:
    """The scorer's feature columns in row order (heads such as ai_score come after)."""
    return (STAT_COLUMNS if full_graph else SENTIMENT_ONLY_COLUMNS) + sentiment_columns(labels)


def length_statistics(m: np.ndarray) -> dict[str, np.ndarray]:
    """n_tokens (predicted tokens: the mask m = attention_mask[:, 1:]) and truncated as a placeholder 0."""
    n = m.sum(axis=1).astype(np.float64)
    return {"n_tokens": n, "truncated": np.zeros_like(n)}


def token_statistics(out: dict, m: np.ndarray) -> dict[str, np.ndarray]:
    """STAT_COLUMNS from per-token outputs and the predicted-token mask m = attention_mask[:, 1:]
    (NaN where undefined); shared with the exporter's parity check."""
    lp = out["token_logprob"].astype(np.float64)
    ent = out["token_entropy"].astype(np.float64)
    var = out["token_logprob_var"].astype(np.float64)
    rank = out["token_rank"].astype(np.float64)
    stats = length_statistics(m)
    n = stats["n_tokens"]
    with np.errstate(invalid="ignore", divide="ignore"):
        def mean(x):
            return np.where(m, x, 0.0).sum(axis=1) / n

        nll_mean = mean(-lp)
        stats["nll_mean"] = nll_mean
        stats["nll_std"] = np.sqrt(mean((lp + nll_mean[:, None]) ** 2))
        stats["ppl"] = np.exp(nll_mean)
        stats["entropy_mean"] = mean(ent)
        for k in RANK_BUCKETS:
            stats[f"rank_top{k}"] = mean(rank <= k)
        stats["logrank_mean"] = mean(np.log(np.maximum(rank, 1.0)))
        sum_var = np.where(m, var, 0.0).sum(axis=1)  # Fast-DetectGPT's analytic criterion
        crit = (np.where(m, lp, 0.0).sum(axis=1) + np.where(m, ent, 0.0).sum(axis=1)) / np.sqrt(sum_var)
        stats["fast_detect"] = np.where(sum_var > 0, crit, np.nan)
    return stats


def sentiment_statistics(labels: list[str], logprob: np.ndarray) -> dict[str, np.ndarray]:
    """Class probabilities per label column from the head's log-probs; with three labels also
    sentiment = sent_pos - sent_neg."""
    probs = np.exp(logprob.astype(np.float64))
    stats = dict(zip(label_columns(labels), probs.T))
    if len(labels) == 3:
        stats["sentiment"] = stats["sent_pos"] - stats["sent_neg"]
    return stats
