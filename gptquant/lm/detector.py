"""Train the machine-written-text detector on human vs machine examples.

Features are the scorer's own zero-shot statistics from one forward pass (so training and scoring see
the same numbers): mean NLL, mean log-rank, mean entropy, GLTR top-10/100/1000 shares and the
Fast-DetectGPT analytic criterion, and the same pass's pooled final hidden state. A standardised logistic
regression reads the statistics, the pooled state or both (`features`; auto = the best on the validation
split: on LM-rewritten news the pooled state measured 0.99 AUROC where the statistics gave 0.71); Platt
scaling on the validation split calibrates it; AUROC is reported on a test split it never saw, for ai_score and for
each statistic alone (its direction chosen on the training split). Needs scikit-learn, not torch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import bundle as B
from ..errors import GptquantError
from ..runtime.heads import detector_score
from . import metrics as M
from .data import read_texts
from .headfile import DETECTOR_JSON

FEATURES = ("nll_mean", "logrank_mean", "entropy_mean", "rank_top10", "rank_top100", "rank_top1000", "fast_detect")


FEATURE_SETS = ("stats", "pooled", "both")


def fit_detector(feats, y, seed: int = 0, valid_frac: float = 0.2, test_frac: float = 0.2, C: float = 1.0,
                 pooled=None, features: str = "auto", C_pooled: float = 0.1) -> tuple[dict, dict]:
    """(detector dict, report) from a feature table with the FEATURES columns and labels (1 = machine).

    `pooled` [n, hidden] adds the same pass's pooled hidden states; `features` picks what the logistic
    regression reads: stats, pooled, both, or auto (the best validation AUROC, reported). Rows with
    undefined statistics (texts under two tokens) are excluded and counted in the report."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    if features not in ("auto",) + FEATURE_SETS:
        raise GptquantError(f"features must be auto, stats, pooled or both, got {features!r}")
    if features in ("pooled", "both") and pooled is None:
        raise GptquantError(f"features={features!r} needs the pooled hidden states")
    x = feats[list(FEATURES)].to_numpy(dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    ok = np.isfinite(x).all(1)
    if pooled is not None:
        pooled = np.asarray(pooled, dtype=np.float64)
        if pooled.shape[0] != len(x):
            raise GptquantError(f"pooled states have {pooled.shape[0]} rows, the statistics {len(x)}")
        ok &= np.isfinite(pooled).all(1)
    idx = np.flatnonzero(ok)
    if len(np.unique(y[idx])) < 2:
        raise GptquantError("the detector needs both human and machine-written examples")
    rest, test = train_test_split(idx, test_size=test_frac, random_state=seed, stratify=y[idx])
    train, valid = train_test_split(rest, test_size=valid_frac / (1 - test_frac), random_state=seed, stratify=y[rest])

    def standardise(a):
        mu, sd = a[train].mean(0), a[train].std(0) + 1e-6
        return (a - mu) / sd, mu, sd

    zs, mu, sd = standardise(x)
    parts = {"stats": zs}
    if pooled is not None:
        zp, pmu, psd = standardise(pooled)
        parts.update(pooled=zp, both=np.hstack([zs, zp]))
    fits, valid_auroc = {}, {}
    for name in (FEATURE_SETS if features == "auto" else (features,)):
        if name not in parts:
            continue
        z = np.nan_to_num(parts[name])  # excluded rows may hold NaN; they are never used below
        clf = LogisticRegression(C=C if name == "stats" else C_pooled, max_iter=3000, random_state=seed)
        clf.fit(z[train], y[train])
        fits[name] = (clf, z)
        valid_auroc[name] = M.auroc(y[valid], clf.decision_function(z[valid]))
    chosen = max(valid_auroc, key=valid_auroc.get)  # first of equals: the simpler set
    clf, z = fits[chosen]
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(clf.decision_function(z[valid])[:, None], y[valid])
    coef = clf.coef_[0]
    k = len(FEATURES) if chosen != "pooled" else 0
    det = {"kind": "logistic", "positive": "machine", "inputs": chosen,
           "features": list(FEATURES) if k else [], "mean": mu.tolist() if k else [], "scale": sd.tolist() if k else [],
           "coef": coef[:k].tolist(), "intercept": float(clf.intercept_[0]),
           "calibration": {"a": float(platt.coef_[0, 0]), "b": float(platt.intercept_[0])}}
    if chosen != "stats":
        det["pooled"] = {"dim": int(pooled.shape[1]), "mean": pmu.tolist(), "scale": psd.tolist(),
                         "coef": coef[k:].tolist()}
    score = detector_score(feats.iloc[test], det, pooled[test] if pooled is not None else None)
    report = {"n_train": len(train), "n_valid": len(valid), "n_test": len(test), "excluded_undefined": int((~ok).sum()),
              "features": chosen, "valid_auroc": valid_auroc,
              "test_auroc": {"ai_score": M.auroc(y[test], score)},
              "test_ece": M.ece(y[test], np.stack([1 - score, score], 1))}
    for j, f in enumerate(FEATURES):
        sign = 1.0 if M.auroc(y[train], x[train, j]) >= 0.5 else -1.0
        report["test_auroc"][f] = M.auroc(y[test], sign * x[test, j])
    det["test"] = report["test_auroc"]
    det["test_ece"] = report["test_ece"]
    return det, report


def train_detector(model_path, human, machine, *, text_column=None, limit: int | None = None, seed: int = 0,
                   out=None, batch_size: int = 32, threads: int | None = None, features: str = "auto") -> dict:
    """Score human and machine texts with the model (a bundle, or a checkpoint exported on the fly),
    fit the detector, and store it where export/scoring pick it up: a bundle's manifest heads.detector,
    or gptquant_detector.json in a checkpoint directory (and `out` when given). Returns the report."""
    import pandas as pd

    from .bundle_cache import load_model

    h = read_texts(human, text_column, limit, seed)
    m = read_texts(machine, text_column, limit, seed)
    scorer = load_model(model_path, batch_size=batch_size, threads=threads)
    if not scorer.has_token_outputs:
        raise GptquantError(f"{model_path}: a sentiment-only bundle has no LM statistics; train the detector on a "
                            "full bundle or the checkpoint")
    (fh, ph), (fm, pm) = _score(scorer, h, pooled=True), _score(scorer, m, pooled=True)
    feats = pd.concat([fh, fm], ignore_index=True)
    pooled = np.concatenate([ph, pm]) if ph is not None else None
    y = np.r_[np.zeros(len(h)), np.ones(len(m))]
    det, report = fit_detector(feats, y, seed=seed, pooled=pooled,
                               features=features if pooled is not None or features != "auto" else "stats")
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


def _score(scorer, texts, pooled: bool = False):
    """Feature table of `texts` (and, with pooled=True, a tuple with their pooled states, or None when
    the graph has no pooled output), with a progress bar."""
    import pandas as pd
    from tqdm.auto import tqdm

    want = pooled and scorer.has_pooled
    frames, states = [], []
    with tqdm(total=len(texts), disable=None, desc="score", leave=False) as bar:
        for out in scorer.score_batches(texts, with_pooled=want):
            df, p = out if want else (out, None)
            frames.append(df)
            states.append(p)
            bar.update(len(df))
    df = pd.concat(frames, ignore_index=True) if frames else scorer.score([])
    if not pooled:
        return df
    return df, (np.concatenate(states) if want and states else None)
