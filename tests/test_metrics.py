"""Metrics `eval` reports: they must agree with scikit-learn's definitions and behave as documented."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from gptquant.errors import GptquantError
from gptquant.lm import metrics as M

LABELS = ["negative", "neutral", "positive"]


def _random_case(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    return y, np.exp(M.log_softmax(logits))


def test_report_agrees_with_sklearn():
    y, probs = _random_case()
    r = M.classification_report(y, probs, LABELS)
    pred = probs.argmax(1)
    assert r["accuracy"] == pytest.approx((pred == y).mean())
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert r["confusion"] == confusion_matrix(y, pred).tolist()
    for k, lab in enumerate(LABELS):
        assert r["per_class"][lab]["precision"] == pytest.approx(precision_score(y, pred, labels=[k], average="macro"))
        assert r["per_class"][lab]["recall"] == pytest.approx(recall_score(y, pred, labels=[k], average="macro"))


def test_a_never_predicted_class_scores_zero_not_nan():
    y = np.array([0, 1, 2, 2])
    probs = np.eye(3)[[0, 0, 2, 2]] * 0.9 + 0.1 / 3
    r = M.classification_report(y, probs, LABELS)
    assert r["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.4, 1.0, 20000)
    correct = rng.random(20000) < conf  # right exactly as often as claimed
    y = np.where(correct, 0, 1)
    probs = np.stack([conf, 1 - conf], 1)
    assert M.ece(y, probs) < 0.02
    assert M.ece(y, np.stack([np.full_like(conf, 0.99), np.full_like(conf, 0.01)], 1)) > 0.2


def test_temperature_scaling_recovers_the_sharpening_and_lowers_nll():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(size=(4000, 3)) * 2
    p = np.exp(M.log_softmax(true_logits))
    y = np.array([rng.choice(3, p=row) for row in p])
    sharpened = true_logits * 3.0  # an overconfident model
    t = M.fit_temperature(sharpened, y)
    assert 2.4 < t < 3.6
    assert M.nll(sharpened, y, t) < M.nll(sharpened, y)


def test_auroc_matches_sklearn_and_refuses_nan():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + y
    s[:50] = np.round(s[:50])  # ties count half
    assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(GptquantError, match="NaN"):
        M.auroc(y, np.r_[np.nan, s[1:]])


def test_bad_shapes_and_ids_are_clear_errors():
    with pytest.raises(GptquantError, match="shape"):
        M.classification_report([0, 1], np.ones((2, 2)), LABELS)
    with pytest.raises(GptquantError, match="label ids"):
        M.confusion([0, 5], [0, 1], 3)
