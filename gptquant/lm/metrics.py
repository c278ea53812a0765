"""Classification quality for sentiment heads: accuracy, macro-F1, per-class precision/recall, confusion
matrix and AUROC from scikit-learn (the train extra), with this project's checks and clear errors around
them; expected calibration error and temperature scaling, which scikit-learn lacks, here.

No torch, so evaluating an exported bundle needs no deep-learning stack.
"""
from __future__ import annotations

import numpy as np

from ..errors import GptquantError


def _check(y_true, y_pred, n_classes: int):
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise GptquantError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise GptquantError("no rows to evaluate")
    for name, y in (("label", y_true), ("prediction", y_pred)):
        if y.min() < 0 or y.max() >= n_classes:
            raise GptquantError(f"{name} ids must be in [0, {n_classes}), got {y.min()}..{y.max()}")
    return y_true, y_pred


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    """[true, predicted] counts."""
    from sklearn.metrics import confusion_matrix

    y_true, y_pred = _check(y_true, y_pred, n_classes)
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes)).astype(np.int64)


def classification_report(y_true, probs, labels: list[str]) -> dict:
    """Every figure `eval` prints, from true label ids and predicted class probabilities [n, k]. A class
    never predicted (or never present) scores 0, not NaN."""
    from sklearn.metrics import precision_recall_fscore_support

    probs = np.asarray(probs, dtype=np.float64)
    k = len(labels)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise GptquantError(f"expected probabilities of shape [n, {k}], got {probs.shape}")
    y_pred = probs.argmax(1)
    m = confusion(y_true, y_pred, k)
    precision, recall, f1, support = precision_recall_fscore_support(
        np.asarray(y_true, dtype=np.int64), y_pred, labels=np.arange(k), zero_division=0.0)
    return {
        "n": int(m.sum()),
        "accuracy": float(np.trace(m) / m.sum()),
        "macro_f1": float(f1.mean()),
        "per_class": {lab: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                      for lab, p, r, f, n in zip(labels, precision, recall, f1, support)},
        "confusion": m.tolist(),
        "ece": ece(y_true, probs),
    }


def ece(y_true, probs, n_bins: int = 15) -> float:
    """Expected calibration error: |accuracy − confidence| over equal-width confidence bins, weighted by size."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.sum() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total / len(conf))


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def nll(logits, y_true, temperature: float = 1.0) -> float:
    lp = log_softmax(logits, temperature)
    return float(-lp[np.arange(len(lp)), np.asarray(y_true)].mean())


def fit_temperature(logits, y_true) -> float:
    """Temperature T > 0 minimising validation NLL of softmax(logits / T) (Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    if len(logits) == 0:
        return 1.0
    res = minimize_scalar(lambda t: nll(logits, y_true, np.exp(t)), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded")
    return float(np.exp(res.x))


def auroc(y_true, score) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half). NaN scores
    are an error: the caller must say which rows lack a score rather than drop them here."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if np.isnan(s).any():
        raise GptquantError(f"{int(np.isnan(s).sum())} scores are NaN")
    if y.all() or not y.any():
        raise GptquantError("AUROC needs both classes")
    return float(roc_auc_score(y, s))


def format_table(rows: dict[str, dict], labels: list[str] | None = None) -> str:
    """A plain-text table: one line per model with accuracy, macro-F1, ECE and per-class P/R."""
    head = f"{'model':<24}{'n':>6}{'acc':>8}{'macroF1':>9}{'ECE':>7}"
    if labels:
        head += "".join(f"  {lab[:10]:>10} P/R" for lab in labels)
    lines = [head]
    for name, r in rows.items():
        line = f"{name:<24}{r['n']:>6}{r['accuracy']:>8.4f}{r['macro_f1']:>9.4f}{r['ece']:>7.4f}"
        if labels:
            line += "".join(f"  {r['per_class'][lab]['precision']:>6.3f}/{r['per_class'][lab]['recall']:.3f}"
                            for lab in labels)
        lines.append(line)
    return "\n".join(lines)
