"""The baseline every GPT head is reported beside: character n-gram TF-IDF + logistic regression,
trained on the same split. Stored as JSON (vocabulary, idf, coefficients) — no pickle to trust.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..bundle import atomic_write_text
from ..errors import GptquantError
from ..text import normalize_text

NGRAMS = (1, 3)
MAX_FEATURES = 100_000
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)
CLASS_WEIGHTS = (None, "balanced")  # tuned too: "balanced" is worth ~2 macro-F1 points on FinFE's skewed labels
SUBLINEAR = (True, False)  # term weighting: 1 + log(tf) or raw tf (scikit-learn's default), tuned as well


class Baseline:
    """TF-IDF (char 1–3 grams, sublinear or raw tf) + multinomial logistic regression."""

    def __init__(self, vectorizer, coef: np.ndarray, intercept: np.ndarray, labels: list[str], C: float):
        self.vectorizer, self.coef, self.intercept, self.labels, self.C = vectorizer, coef, intercept, labels, C

    def logits(self, texts) -> np.ndarray:
        x = self.vectorizer.transform([normalize_text(t) for t in texts])
        return np.asarray(x @ self.coef.T) + self.intercept

    def to_dict(self) -> dict:
        vocab = self.vectorizer.vocabulary_
        terms = sorted(vocab, key=vocab.get)
        return {"kind": "tfidf-char-logreg", "ngram_range": list(NGRAMS), "labels": self.labels, "C": self.C,
                "sublinear_tf": bool(self.vectorizer.sublinear_tf), "terms": terms, "idf": self.vectorizer.idf_.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept.tolist()}

    def save(self, path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path) -> "Baseline":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            vec = _vectorizer(vocabulary={t: i for i, t in enumerate(d["terms"])},
                              sublinear_tf=bool(d.get("sublinear_tf", True)))
            vec.idf_ = np.asarray(d["idf"], dtype=np.float64)
            return cls(vec, np.asarray(d["coef"]), np.asarray(d["intercept"]), list(d["labels"]), float(d["C"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GptquantError(f"{path}: unreadable baseline ({type(exc).__name__}: {exc})") from None


def _vectorizer(sublinear_tf: bool = True, **kw):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char", ngram_range=NGRAMS, sublinear_tf=sublinear_tf, lowercase=False,
                           dtype=np.float64, **kw)


def train_baseline(texts, y, labels: list[str], val_texts=None, val_y=None, seed: int = 0) -> Baseline:
    """Fit on the training split; C, the class weighting and the term weighting are chosen by validation
    macro-F1 when a validation split is given, so every head is reported beside the strongest simple baseline."""
    from sklearn.linear_model import LogisticRegression

    from .metrics import classification_report

    texts = [normalize_text(t) for t in texts]
    tuned = val_texts is not None and len(val_texts)
    val_texts = [normalize_text(t) for t in val_texts] if tuned else None
    best = None
    for sublinear in SUBLINEAR if tuned else (True,):
        vec = _vectorizer(sublinear, max_features=MAX_FEATURES)
        x = vec.fit_transform(texts)
        xv = vec.transform(val_texts) if tuned else None
        for C, weight in [(C, w) for w in CLASS_WEIGHTS for C in C_GRID] if tuned else [(10.0, None)]:
            clf = LogisticRegression(C=C, max_iter=2000, class_weight=weight, random_state=seed).fit(x, y)
            score = classification_report(val_y, clf.predict_proba(xv), labels)["macro_f1"] if tuned else 0.0
            if best is None or score > best[0]:
                best = (score, C, clf, vec)
    _, C, clf, vec = best
    coef, intercept = _full_coef(clf, len(labels))
    return Baseline(vec, coef, intercept, list(labels), C)


def _full_coef(clf, k: int):
    """[k, n_features] coefficients even when the training split lacked a class (that class never wins)."""
    coef = np.zeros((k, clf.coef_.shape[1]))
    intercept = np.full(k, -1e4)
    if len(clf.classes_) == 2:  # binary LR stores one row: class 1 vs class 0
        a, b = clf.classes_
        coef[b], intercept[b] = clf.coef_[0], clf.intercept_[0]
        coef[a], intercept[a] = 0.0, 0.0
    else:
        coef[clf.classes_] = clf.coef_
        intercept[clf.classes_] = clf.intercept_
    return coef, intercept
