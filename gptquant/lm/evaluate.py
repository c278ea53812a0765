"""Evaluating sentiment models on a labelled table: calibrated probabilities from a trained checkpoint
(torch) or an exported bundle (onnxruntime), scored with the same classification report."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GptquantError
from . import metrics as M
from .data import read_labelled
from .headfile import BASELINE_JSON, read_head_meta


def predict_probs(model_path, texts, batch: int = 64, progress: bool = False,
                  max_length: int = 256) -> tuple[np.ndarray, list[str]]:
    """Calibrated class probabilities from a trained checkpoint (torch) or an exported bundle (onnxruntime).
    A checkpoint's texts are cut to `max_length` tokens like an exported bundle's (export's default 256)."""
    path = Path(model_path)
    if (path / "manifest.json").is_file():
        from ..runtime.columns import label_columns
        from ..runtime.scorer import Scorer

        scorer = Scorer(path, batch_size=batch)
        if not scorer.labels:
            raise GptquantError(f"{path}: bundle has no sentiment head")
        df = scorer.score(list(texts))
        return df[label_columns(scorer.labels)].to_numpy(dtype=np.float64), list(scorer.labels)
    from .checkpoint import load_checkpoint
    from .headfile import load_head
    from .heads import encode_ids, head_logits

    ckpt = load_checkpoint(path)
    meta = read_head_meta(path)
    if meta is not None and meta.get("method") == "hybrid":
        from ..runtime.hybrid import HybridHead
        from .hybrid import hybrid_logprobs

        head = HybridHead.load(path)
        return np.exp(hybrid_logprobs(ckpt, head, list(texts), progress=progress)), list(head.labels)
    found = load_head(path, ckpt)
    if found is None:
        raise GptquantError(f"{path}: no sentiment head here (train one with `gptquant train sentiment`)")
    head, meta = found
    max_length = min(max_length, int(ckpt.config.get("n_positions", max_length)))
    logits = head_logits(head, encode_ids(ckpt, texts, max_length), ckpt.policy.pad_id, batch, progress)
    return np.exp(M.log_softmax(logits, meta["temperature"])), list(meta["labels"])


def model_labels(model_path) -> list[str]:
    """Label names (in order) of a trained checkpoint's head or a bundle's sentiment output."""
    path = Path(model_path)
    if (path / "manifest.json").is_file():
        from ..bundle import read_manifest

        labels = read_manifest(path).get("labels")
    else:
        meta = read_head_meta(path)
        if meta is None:
            raise GptquantError(f"{path}: neither a bundle nor a checkpoint with a trained sentiment head")
        labels = meta.get("labels")
    if not labels:
        raise GptquantError(f"{path}: has no sentiment head")
    return list(labels)


def evaluate(model_paths, data, *, text_column=None, label_column=None, term_column=None, baseline: bool = True,
             progress: bool = False) -> dict:
    """{name: classification report} for each model (checkpoint or bundle) and, where a checkpoint has
    one, its TF-IDF baseline, on a labelled table."""
    from .baseline import Baseline

    results = {}
    for path in map(Path, model_paths):
        labels = model_labels(path)
        texts, y, _ = read_labelled(data, text_column, label_column, term_column, labels)
        probs, _ = predict_probs(path, texts, progress=progress)
        meta = read_head_meta(path)
        name = f"{path.name} ({meta['method']})" if meta else path.name
        results[name] = M.classification_report(y, probs, labels)
        if baseline and (path / BASELINE_JSON).is_file():
            base = Baseline.load(path / BASELINE_JSON)
            if base.labels != labels:
                raise GptquantError(f"{path / BASELINE_JSON}: labels {base.labels} differ from the head's {labels}")
            results[f"{path.name} (tfidf baseline)"] = M.classification_report(
                y, np.exp(M.log_softmax(base.logits(texts))), labels)
    return results
