"""Fitting the hybrid sentiment head (the numpy runtime side is gptquant.runtime.hybrid).

Stage 1, the GPT probe: a class-balanced logistic regression on standardised GPT features, C chosen on
validation macro-F1; its log-probs on the training rows are cross-fitted (5 folds) so stage 2 sees them
as they will look on unseen text. Stage 2: a class-balanced logistic regression over [hashed token
1-3-grams, TF-IDF, L2] and [probe log-probs x w]; C, then w, chosen on validation macro-F1 (w is folded
into the stored coefficients). A temperature fitted on validation calibrates the output.
"""
from __future__ import annotations

import numpy as np

from ..runtime.hybrid import KIND, HybridHead, ngram_matrix
from . import metrics as M

N_MAX = 3
DIM = 1 << 18
PROBE_C = (0.03, 0.1, 0.3)
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
W_GRID = (0.0, 0.3, 1.0)  # the GPT block's weight; C is searched at the first
FOLDS = 5


def _idf(id_lists, dim: int) -> np.ndarray:
    """Smoothed idf over the training texts (sklearn's: ln((1 + n) / (1 + df)) + 1)."""
    _, cols, _ = ngram_matrix(id_lists, N_MAX, dim)
    df = np.bincount(cols, minlength=dim).astype(np.float64)  # buckets are unique within a row
    return np.log((1.0 + len(id_lists)) / (1.0 + df)) + 1.0


def _sparse(id_lists, dim: int, idf: np.ndarray):
    from scipy.sparse import csr_matrix

    rows, cols, vals = ngram_matrix(id_lists, N_MAX, dim, idf)
    return csr_matrix((vals, (rows, cols)), shape=(len(id_lists), dim))


def _design(xs, g, w):
    from scipy.sparse import csr_matrix, hstack

    return xs if w == 0 else hstack([xs, csr_matrix(g * w)], format="csr")


def _logreg(C, seed):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=3000, class_weight="balanced", random_state=seed)


def _coef(clf, k):
    from .baseline import _full_coef

    return _full_coef(clf, k)


def _logits(clf, x, k) -> np.ndarray:
    """[n, k] logits, also for two labels (where scikit-learn's decision_function gives one column)."""
    w, b = _coef(clf, k)
    return np.asarray(x @ w.T) + b


def fit_hybrid(train_ids, train_dense, y_train, val_ids, val_dense, y_val, labels, dense_names, *,
               max_tokens: int = 256, seed: int = 0, dim: int = DIM, log=None):
    """(HybridHead, report). `*_dense` are [n, width] GPT features made of the blocks `dense_names`
    [(name, width)]; token id lists are cut to `max_tokens` like the runtime's."""
    from sklearn.model_selection import StratifiedKFold

    k = len(labels)
    say = log or (lambda s: None)
    f1 = lambda y, logits: M.classification_report(y, np.exp(M.log_softmax(logits)), labels)["macro_f1"]  # noqa: E731
    train_ids = [np.asarray(s)[:max_tokens] for s in train_ids]
    val_ids = [np.asarray(s)[:max_tokens] for s in val_ids]
    dt = np.nan_to_num(np.asarray(train_dense, dtype=np.float64), nan=0.0)
    dv = np.nan_to_num(np.asarray(val_dense, dtype=np.float64), nan=0.0)
    mu, sd = dt.mean(0), dt.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    zt, zv = (dt - mu) / sd, (dv - mu) / sd
    grid = []
    probes = []
    for C in PROBE_C:
        clf = _logreg(C, seed).fit(zt, y_train)
        probes.append((f1(y_val, _logits(clf, zv, k)), C, clf))
        grid.append({"stage": "probe", "C": C, "val_macro_f1": probes[-1][0]})
        say(f"hybrid probe C={C}: validation macro-F1 {probes[-1][0]:.4f}")
    probe_f1, probe_C, probe = max(probes, key=lambda t: t[0])
    pw, pb = _coef(probe, k)
    gt = np.zeros((len(y_train), k))
    folds = min(FOLDS, int(np.bincount(y_train).min()))
    if folds >= 2:
        for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(zt, y_train):
            gt[b] = M.log_softmax(_logits(_logreg(probe_C, seed).fit(zt[a], y_train[a]), zt[b], k))
    else:  # too few rows per class to cross-fit: the in-sample probe
        gt = M.log_softmax(zt @ pw.T + pb)
    gv = M.log_softmax(zv @ pw.T + pb)
    idf = _idf(train_ids, dim)
    xt, xv = _sparse(train_ids, dim, idf), _sparse(val_ids, dim, idf)
    fits = []

    def fit(C, w):
        clf = _logreg(C, seed).fit(_design(xt, gt, w), y_train)
        score = f1(y_val, _logits(clf, _design(xv, gv, w), k))
        fits.append((score, -w, C, clf))
        grid.append({"stage": "hybrid", "C": C, "w": w, "val_macro_f1": score})
        say(f"hybrid C={C} GPT weight {w}: validation macro-F1 {score:.4f}")
        return score

    c0 = max(C_GRID, key=lambda C: fit(C, W_GRID[0]))
    for w in W_GRID[1:]:
        fit(c0, w)
    score, neg_w, C, clf = max(fits, key=lambda t: t[:2])
    w = -neg_w
    coef, intercept = _coef(clf, k)
    stack = coef[:, dim:] * w if w else np.zeros((k, k))
    spec = {"kind": KIND, "labels": list(labels), "ngram": {"n_max": N_MAX, "dim": dim, "max_tokens": int(max_tokens)},
            "dense": [[n, int(wd)] for n, wd in dense_names], "probe_C": probe_C, "C": C, "gpt_weight": w,
            "temperature": 1.0}
    head = HybridHead(spec, {"ngram_idf": idf, "ngram_coef": coef[:, :dim], "dense_mean": mu, "dense_scale": sd,
                             "probe_coef": pw, "probe_intercept": pb, "stack_coef": stack, "intercept": intercept})
    spec["temperature"] = head.temperature = float(M.fit_temperature(head.logits(val_ids, dv), y_val))
    report = M.classification_report(y_val, np.exp(head.logprobs(val_ids, dv)), labels)
    ngram_only = max((t[0] for t in fits if t[1] == 0), default=None)
    sk_logprobs = clf.predict_log_proba(_design(xv, gv, w))  # what scikit-learn itself says (tests compare)
    return head, {"validation": report, "sklearn_val_logprobs": sk_logprobs, "C": C, "gpt_weight": w, "probe_val_macro_f1": probe_f1,
                  "ngram_only_val_macro_f1": ngram_only, "grid": grid}



def gpt_features(ckpt, texts, max_tokens: int, blocks=("stats", "pooled", "last_hidden"), batch: int = 32,
                 progress: bool = False):
    """(token id lists cut to max_tokens, {block: [n, width]}) from the bundle's own feature graph in
    torch, so training sees what the exported graph computes."""
    import torch
    from tqdm.auto import tqdm

    from ..runtime.columns import token_statistics
    from ..runtime.hybrid import HYBRID_STATS
    from ..tokenize import pad_batch, token_ids
    from .export import feature_graph

    graph = feature_graph(ckpt.model.eval())
    ids = [s[:max_tokens] for s in token_ids(ckpt.tokenizer, texts, ckpt.policy)]
    order = np.argsort([len(s) for s in ids], kind="stable")
    out = {b: [None] * len(ids) for b in blocks}
    with torch.no_grad():
        for b in tqdm(range(0, len(order), batch), disable=not progress or None, desc="features", leave=False):
            idx = order[b: b + batch]
            x, m, _ = pad_batch([ids[i] for i in idx], 10**9, ckpt.policy.pad_id)
            o = {n: v.numpy() for n, v in zip(graph.output_names, graph(torch.from_numpy(x), torch.from_numpy(m)))}
            feats = {"pooled": o["pooled"], "last_hidden": o["last_hidden"]}
            if "stats" in blocks:
                st = token_statistics(o, m[:, 1:].astype(bool))
                feats["stats"] = np.stack([st[c] for c in HYBRID_STATS], 1)
            for name in blocks:
                for r, row in zip(idx, feats[name]):
                    out[name][r] = row
    return ids, {name: np.asarray(rows, dtype=np.float64) for name, rows in out.items()}


def dense_names(hidden: int) -> list[tuple[str, int]]:
    from ..runtime.hybrid import HYBRID_STATS

    return [("stats", len(HYBRID_STATS)), ("pooled", hidden), ("last_hidden", hidden)]


def dense_of(head: HybridHead, blocks: dict, n: int) -> np.ndarray:
    return head.dense_matrix(blocks, n)


def train_hybrid(ckpt, tr_texts, tr_y, val_texts, val_y, labels, out_dir, *, max_tokens: int = 256, seed: int = 0,
                 progress: bool = False, log=None):
    """Fit the hybrid head on the frozen LM's features and write its files into `out_dir`.
    Returns (head, fit report, validation logits) -- the report's figures are on validation."""
    names = dense_names(int(ckpt.config["n_embd"]))
    ids_t, bt = gpt_features(ckpt, tr_texts, max_tokens, progress=progress)
    ids_v, bv = gpt_features(ckpt, val_texts, max_tokens, progress=progress)
    cols = [n for n, _ in names]
    head, info = fit_hybrid(ids_t, np.hstack([bt[c] for c in cols]), np.asarray(tr_y), ids_v,
                            np.hstack([bv[c] for c in cols]), np.asarray(val_y), labels, names,
                            max_tokens=max_tokens, seed=seed, log=log)
    head.save(out_dir)
    info.pop("sklearn_val_logprobs")
    return head, info, head.logits(ids_v, np.hstack([bv[c] for c in cols]))


def hybrid_logprobs(ckpt, head: HybridHead, texts, progress: bool = False) -> np.ndarray:
    """Calibrated log-probs of a checkpoint's hybrid head, features computed in torch."""
    ids, blocks = gpt_features(ckpt, texts, head.max_tokens, blocks=tuple(n for n, _ in head.dense), progress=progress)
    return head.logprobs(ids, head.dense_matrix(blocks, len(ids)))

