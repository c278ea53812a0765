"""Small heads that travel in the manifest and run on the scorer's per-article columns (numpy only).

The machine-written-text detector: a logistic regression on standardised zero-shot statistics
(mean log-prob, log-rank, entropy, GLTR buckets, Fast-DetectGPT), Platt-calibrated, giving `ai_score`
in [0, 1]. An article whose statistics are undefined (fewer than two tokens) gets NaN, not a guess.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import GptquantError

DETECTOR_KEYS = ("features", "mean", "scale", "coef", "intercept", "calibration")


def check_detector(det, where: str = "detector") -> dict:
    """Validate a detector dict (from a manifest or a JSON file), naming the bad field."""
    if not isinstance(det, dict):
        raise GptquantError(f"{where}: must be an object, got {type(det).__name__}")
    for key in DETECTOR_KEYS:
        if key not in det:
            raise GptquantError(f"{where}: missing field {key!r}")
    n = len(det["features"])
    if n == 0 or not all(isinstance(f, str) for f in det["features"]):
        raise GptquantError(f"{where}: 'features' must be a non-empty list of column names")
    for key in ("mean", "scale", "coef"):
        v = det[key]
        if not isinstance(v, list) or len(v) != n or not all(isinstance(x, (int, float)) for x in v):
            raise GptquantError(f"{where}: {key!r} must be {n} numbers (one per feature)")
    if any(s <= 0 for s in det["scale"]):
        raise GptquantError(f"{where}: 'scale' must be positive")
    cal = det["calibration"]
    if not isinstance(cal, dict) or not all(isinstance(cal.get(k), (int, float)) for k in ("a", "b")):
        raise GptquantError(f"{where}: 'calibration' must hold numbers a and b")
    return det


def detector_score(df: pd.DataFrame, det: dict) -> np.ndarray:
    """P(machine-written) per row from the statistics columns named by the detector."""
    missing = [f for f in det["features"] if f not in df.columns]
    if missing:
        raise GptquantError(f"detector needs column(s) {', '.join(missing)} that the scores lack")
    x = df[det["features"]].to_numpy(dtype=np.float64)
    z = (x - np.asarray(det["mean"])) / np.asarray(det["scale"])
    s = z @ np.asarray(det["coef"], dtype=np.float64) + float(det["intercept"])
    t = det["calibration"]["a"] * s + det["calibration"]["b"]
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-t))  # NaN statistics stay NaN


def apply_heads(df: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    """Add the columns of heads carried in the manifest (today: ai_score) to the scorer's output."""
    det = (manifest.get("heads") or {}).get("detector")
    if not det:
        return df
    det = check_detector(det, "manifest heads.detector")
    df = df.copy()
    df["ai_score"] = detector_score(df, det) if len(df) else pd.Series(dtype="float64")
    return df
