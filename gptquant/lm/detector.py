"""Train the machine-written-text detector on human vs machine examples.

Features are the scorer's own zero-shot statistics from one forward pass (so training and scoring see
the same numbers): mean NLL, mean log-rank, mean entropy, GLTR top-10/100/1000 shares and the
Fast-DetectGPT analytic criterion. A standardised logistic regression combines them; Platt scaling on a
validation split calibrates it; AUROC is reported on a test split it never saw, for ai_score and for
each statistic alone (its direction chosen on the training split). Needs scikit-learn, not torch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import bundle as B
from ..errors import GptquantError
from ..runtime.heads import check_detector, detector_score
from . import metrics as M

FEATURES = ("nll_mean", "logrank_mean", "entropy_mean", "rank_top10", "rank_top100", "rank_top1000", "fast_detect")


def load_detector(path) -> dict:
    try:
        det = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GptquantError(f"{path}: unreadable detector ({exc})") from None
    return check_detector(det, str(path))


def read_texts(source, text_column=None, limit=None, seed: int = 0) -> list[str]:
    """Texts of a table (an empty text is an error naming the row); `limit` samples rows, seeded."""
    from .sentiment import read_table

    name, df = read_table(source)
    col = text_column or next((c for c in ("text", "sentence", "content") if c in df.columns), None)
    if col not in df.columns:
        raise GptquantError(f"{name}: no text column (expected 'text' or pass --text-column), found {list(df.columns)}")
    for i, t in enumerate(df[col], start=1):
        if not isinstance(t, str) or not t.strip():
            raise GptquantError(f"{name}: row {i}: empty or missing {col!r}")
    texts = df[col].tolist()
    if limit and len(texts) > limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(texts))[:limit])
        texts = [texts[i] for i in keep]
    return texts


def fit_detector(feats, y, seed: int = 0, valid_frac: float = 0.2, test_frac: float = 0.2, C: float = 1.0) -> tuple[dict, dict]:
    """(detector dict, report) from a feature table with the FEATURES columns and labels (1 = machine).
    Rows with undefined statistics (texts under two tokens) are excluded and counted in the report."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x = feats[list(FEATURES)].to_numpy(dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    ok = np.isfinite(x).all(1)
    idx = np.flatnonzero(ok)
    if len(np.unique(y[idx])) < 2:
        raise GptquantError("the detector needs both human and machine-written examples")
    rest, test = train_test_split(idx, test_size=test_frac, random_state=seed, stratify=y[idx])
    train, valid = train_test_split(rest, test_size=valid_frac / (1 - test_frac), random_state=seed, stratify=y[rest])
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit((x[train] - mu) / sd, y[train])
    raw = ((x[valid] - mu) / sd) @ clf.coef_[0] + clf.intercept_[0]
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw[:, None], y[valid])
    det = {"kind": "logistic", "positive": "machine", "features": list(FEATURES), "mean": mu.tolist(),
           "scale": sd.tolist(), "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]),
           "calibration": {"a": float(platt.coef_[0, 0]), "b": float(platt.intercept_[0])}}
    score = detector_score(feats.iloc[test], det)
    report = {"n_train": len(train), "n_valid": len(valid), "n_test": len(test), "excluded_undefined": int((~ok).sum()),
              "test_auroc": {"ai_score": M.auroc(y[test], score)},
              "test_ece": M.ece(y[test], np.stack([1 - score, score], 1))}
    for k, f in enumerate(FEATURES):
        sign = 1.0 if M.auroc(y[train], x[train, k]) >= 0.5 else -1.0
        report["test_auroc"][f] = M.auroc(y[test], sign * x[test, k])
    det["test"] = report["test_auroc"]
    return det, report


def train_detector(model_path, human, machine, *, text_column=None, limit: int | None = None, seed: int = 0,
                   out=None, batch_size: int = 32, threads: int | None = None) -> dict:
    """Score human and machine texts with the model (a bundle, or a checkpoint exported on the fly),
    fit the detector, and store it where export/scoring pick it up: a bundle's manifest heads.detector,
    or gptquant_detector.json in a checkpoint directory (and `out` when given). Returns the report."""
    import pandas as pd

    from ..runtime.scorer import load_model
    from .sentiment import DETECTOR_JSON

    h = read_texts(human, text_column, limit, seed)
    m = read_texts(machine, text_column, limit, seed)
    scorer = load_model(model_path, batch_size=batch_size, threads=threads)
    feats = pd.concat([_score(scorer, h), _score(scorer, m)], ignore_index=True)
    y = np.r_[np.zeros(len(h)), np.ones(len(m))]
    det, report = fit_detector(feats, y, seed=seed)
    report.update(n_human=len(h), n_machine=len(m))
    path = Path(model_path)
    text = json.dumps(det, indent=2)
    if out:
        B.atomic_write_text(out, text)
    if (path / B.MANIFEST).is_file():
        manifest = B.verify_bundle(path)
        manifest = {k: v for k, v in manifest.items() if k not in ("files", "format", "format_version")}
        manifest.setdefault("heads", {})["detector"] = det
        B.write_manifest(path, manifest)
        report["written"] = str(path / B.MANIFEST)
    else:
        B.atomic_write_text(path / DETECTOR_JSON, text)
        report["written"] = str(path / DETECTOR_JSON)
    return report


def _score(scorer, texts):
    from tqdm.auto import tqdm

    chunks = []
    with tqdm(total=len(texts), disable=None, desc="score", leave=False) as bar:
        for df in scorer.score_batches(texts):
            chunks.append(df)
            bar.update(len(df))
    import pandas as pd

    return pd.concat(chunks, ignore_index=True)
