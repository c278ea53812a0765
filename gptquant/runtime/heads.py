"""Small heads that travel in the manifest and run on the scorer's per-article columns (numpy only).

The machine-written-text detector: a logistic regression on standardised zero-shot statistics
(mean log-prob, log-rank, entropy, GLTR buckets, Fast-DetectGPT) and/or the same pass's pooled final
hidden state (a style probe: far stronger on LM-rewritten news), Platt-calibrated, giving `ai_score`
in [0, 1]. An article whose statistics are undefined (fewer than two tokens) gets NaN, not a guess.
Weights are plain JSON numbers (no pickle).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GptquantError

DETECTOR_KEYS = ("features", "mean", "scale", "coef", "intercept", "calibration")


def _numbers(v, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def check_detector(det, where: str = "detector", hidden_size: int | None = None) -> dict:
    """Validate a detector dict (from a manifest or a JSON file), naming the bad field. With
    `hidden_size`, a pooled-state part of another width is refused."""
    if not isinstance(det, dict):
        raise GptquantError(f"{where}: must be an object, got {type(det).__name__}")
    for key in DETECTOR_KEYS:
        if key not in det:
            raise GptquantError(f"{where}: missing field {key!r}")
    n = len(det["features"]) if isinstance(det["features"], list) else -1
    pooled = det.get("pooled")
    if n < 0 or not all(isinstance(f, str) for f in det["features"]) or (n == 0 and not pooled):
        raise GptquantError(f"{where}: 'features' must be a list of column names (non-empty unless 'pooled' is given)")
    for key in ("mean", "scale", "coef"):
        if not _numbers(det[key], n):
            raise GptquantError(f"{where}: {key!r} must be {n} numbers (one per feature)")
    if any(s <= 0 for s in det["scale"]):
        raise GptquantError(f"{where}: 'scale' must be positive")
    if pooled is not None:
        if not isinstance(pooled, dict) or not isinstance(pooled.get("dim"), int) or pooled["dim"] < 1:
            raise GptquantError(f"{where}: 'pooled' must be an object with an integer 'dim'")
        for key in ("mean", "scale", "coef"):
            if not _numbers(pooled.get(key), pooled["dim"]):
                raise GptquantError(f"{where}: pooled.{key} must be {pooled['dim']} numbers (one per hidden unit)")
        if any(s <= 0 for s in pooled["scale"]):
            raise GptquantError(f"{where}: pooled.scale must be positive")
        if hidden_size is not None and pooled["dim"] != hidden_size:
            raise GptquantError(f"{where}: detector was fitted on {pooled['dim']}-wide pooled states but this "
                                f"model's hidden size is {hidden_size}; retrain it with `gptquant train detector`")
    if not isinstance(det["intercept"], (int, float)):
        raise GptquantError(f"{where}: 'intercept' must be a number")
    cal = det["calibration"]
    if not isinstance(cal, dict) or not all(isinstance(cal.get(k), (int, float)) for k in ("a", "b")):
        raise GptquantError(f"{where}: 'calibration' must hold numbers a and b")
    return det


def needs_pooled(det: dict | None) -> bool:
    return bool(det and det.get("pooled"))


def detector_score(df: pd.DataFrame, det: dict, pooled: np.ndarray | None = None) -> np.ndarray:
    """P(machine-written) per row from the statistics columns named by the detector and, when the
    detector has a pooled part, the rows' pooled hidden states [n, dim]."""
    missing = [f for f in det["features"] if f not in df.columns]
    if missing:
        raise GptquantError(f"detector needs column(s) {', '.join(missing)} that the scores lack")
    x = df[det["features"]].to_numpy(dtype=np.float64)
    z = (x - np.asarray(det["mean"])) / np.asarray(det["scale"])
    s = z @ np.asarray(det["coef"], dtype=np.float64) + float(det["intercept"])
    if needs_pooled(det):
        p = det["pooled"]
        if pooled is None:
            raise GptquantError("detector needs the pooled hidden state, which the scores lack")
        pooled = np.asarray(pooled, dtype=np.float64)
        if pooled.shape != (len(df), p["dim"]):
            raise GptquantError(f"detector needs pooled states of shape ({len(df)}, {p['dim']}), got {pooled.shape}")
        s = s + ((pooled - np.asarray(p["mean"])) / np.asarray(p["scale"])) @ np.asarray(p["coef"], dtype=np.float64)
    t = det["calibration"]["a"] * s + det["calibration"]["b"]
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-t))  # NaN statistics stay NaN


def detector_usable(det: dict | None, columns, has_pooled: bool) -> bool:
    """Whether the scores carry everything the detector reads (a sentiment-only graph may not)."""
    return bool(det) and all(f in columns for f in det["features"]) and (has_pooled or not needs_pooled(det))


def apply_heads(df: pd.DataFrame, manifest: dict, pooled: np.ndarray | None = None) -> pd.DataFrame:
    """Add the columns of heads carried in the manifest (today: ai_score) to the scorer's output."""
    det = (manifest.get("heads") or {}).get("detector")
    if not det:
        return df
    det = check_detector(det, "manifest heads.detector")
    df = df.copy()
    if not len(df):
        df["ai_score"] = pd.Series(dtype="float64")
    else:
        df["ai_score"] = detector_score(df, det, pooled)
    return df
