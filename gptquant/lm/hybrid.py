"""Fitting the hybrid sentiment head (the numpy runtime side is gptquant.runtime.hybrid).

Stage 1, the GPT probe: a class-balanced logistic regression on standardised GPT features, C chosen on
validation macro-F1; its log-probs on the training rows are cross-fitted (5 folds) so stage 2 sees them
as they will look on unseen text. Stage 2: a class-balanced logistic regression over [hashed token
1-3-grams, TF-IDF, L2] and [probe log-probs x w]; C, then w, chosen on validation macro-F1 (w is folded
into the stored coefficients). Stage 3, a second view of the same n-grams: NB-LR (one-vs-rest logistic
regressions on n-gram presence scaled by naive-Bayes log-count ratios, Wang & Manning 2012), its C and its
weight beside stage 2 chosen on validation (weight 0 leaves it out). A temperature fitted on validation
calibrates the output. `refit_hybrid` then fits the chosen settings again on training + validation rows:
the validation rows are a tenth of the labels, too many to leave unused once they have chosen.
"""
from __future__ import annotations

import numpy as np

from ..runtime.hybrid import KIND, HybridHead, combine_views, ngram_matrix
from . import metrics as M

N_MAX = 3
DIM = 1 << 18
PROBE_C = (0.03, 0.1, 0.3)
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
W_GRID = (0.0, 0.3, 1.0)  # the GPT block's weight; C is searched at the first
NB_C = (0.1, 0.3, 1.0)
NB_W = (0.0, 0.5, 1.0, 2.0)  # the NB-LR view's weight beside stage 2; 0 leaves it out
NB_ALPHA = 1.0  # add-one smoothing of the naive-Bayes counts
FOLDS = 5
ASPECT_WINDOW = 20  # tokens either side of the term in "term：text" rows (CFSC, 5 folds: 6 < 12 < 32 < 20)


def _idf(id_lists, dim: int, aspect=None) -> np.ndarray:
    """Smoothed idf over the training texts (sklearn's: ln((1 + n) / (1 + df)) + 1)."""
    _, cols, _ = ngram_matrix(id_lists, N_MAX, dim, aspect=aspect)
    df = np.bincount(cols, minlength=dim).astype(np.float64)  # buckets are unique within a row
    return np.log((1.0 + len(id_lists)) / (1.0 + df)) + 1.0


def _sparse(id_lists, dim: int, idf: np.ndarray, aspect=None):
    from scipy.sparse import csr_matrix

    rows, cols, vals = ngram_matrix(id_lists, N_MAX, dim, idf, aspect)
    return csr_matrix((vals, (rows, cols)), shape=(len(id_lists), dim))


def _presence(x):
    """The same n-grams as 0/1 (what the runtime's NB view reads: the unique buckets of a text)."""
    p = x.copy()
    p.data[:] = 1.0
    return p


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


def _scale(dt):
    mu, sd = dt.mean(0), dt.std(0)
    return mu, np.where(sd > 1e-8, sd, 1.0)


def _crossfit(zt, y, C, k, seed) -> np.ndarray:
    """The probe's log-probs on its own training rows, each from a fit that did not see the row."""
    from sklearn.model_selection import StratifiedKFold

    folds = min(FOLDS, int(np.bincount(y).min()))
    if folds < 2:  # too few rows per class to cross-fit: the in-sample probe
        return M.log_softmax(_logits(_logreg(C, seed).fit(zt, y), zt, k))
    out = np.zeros((len(y), k))
    for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(zt, y):
        out[b] = M.log_softmax(_logits(_logreg(C, seed).fit(zt[a], y[a]), zt[b], k))
    return out


def nb_ratios(p, y, k: int, alpha: float = NB_ALPHA) -> np.ndarray:
    """[k, dim] naive-Bayes log-count ratios of n-gram presence, class c against the rest."""
    r = np.zeros((k, p.shape[1]))
    for c in range(k):
        pos = alpha + np.asarray(p[y == c].sum(0)).ravel()
        neg = alpha + np.asarray(p[y != c].sum(0)).ravel()
        r[c] = np.log(pos / pos.sum()) - np.log(neg / neg.sum())
    return r


def fit_nb(p, y, k: int, C: float, seed: int = 0):
    """NB-LR on presence matrix `p`: per class a balanced logistic regression on p * r_c; returned folded
    as (coef [k, dim], intercept [k]) so that logits = p @ coef.T + intercept. A class absent from `y`
    never wins."""
    r = nb_ratios(p, y, k)
    coef, intercept = np.zeros((k, p.shape[1])), np.full(k, -1e4)
    for c in range(k):
        yc = (y == c).astype(np.int64)
        if 0 < yc.sum() < len(yc):
            clf = _logreg(C, seed).fit(p.multiply(r[c]).tocsr(), yc)
            coef[c], intercept[c] = clf.coef_[0] * r[c], clf.intercept_[0]
    return coef, intercept


def _arrays(mu, sd, idf, coef, intercept, pw, pb, w, dim, k, nb=None) -> dict:
    arrays = {"ngram_idf": idf, "ngram_coef": coef[:, :dim], "dense_mean": mu, "dense_scale": sd,
              "probe_coef": pw, "probe_intercept": pb,
              "stack_coef": coef[:, dim:] * w if w else np.zeros((k, k)), "intercept": intercept}
    if nb is not None:
        arrays["nb_coef"], arrays["nb_intercept"] = nb
    return arrays


def fit_hybrid(train_ids, train_dense, y_train, val_ids, val_dense, y_val, labels, dense_names, *,
               max_tokens: int = 256, seed: int = 0, dim: int = DIM, aspect: dict | None = None, log=None):
    """(HybridHead, report). `*_dense` are [n, width] GPT features made of the blocks `dense_names`
    [(name, width)]; token id lists are cut to `max_tokens` like the runtime's. `aspect`: the n-gram
    settings for "term：text" rows (aspect_settings), stored in the spec."""
    k = len(labels)
    say = log or (lambda s: None)
    f1 = lambda y, logits: M.classification_report(y, np.exp(M.log_softmax(logits)), labels)["macro_f1"]  # noqa: E731
    train_ids = [np.asarray(s)[:max_tokens] for s in train_ids]
    val_ids = [np.asarray(s)[:max_tokens] for s in val_ids]
    dt = np.nan_to_num(np.asarray(train_dense, dtype=np.float64), nan=0.0)
    dv = np.nan_to_num(np.asarray(val_dense, dtype=np.float64), nan=0.0)
    mu, sd = _scale(dt)
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
    gt = _crossfit(zt, y_train, probe_C, k, seed)
    gv = M.log_softmax(zv @ pw.T + pb)
    idf = _idf(train_ids, dim, aspect)
    xt, xv = _sparse(train_ids, dim, idf, aspect), _sparse(val_ids, dim, idf, aspect)
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
    main_val = _logits(clf, _design(xv, gv, w), k)

    pt, pv = _presence(xt), _presence(xv)
    nbs = []
    for nb_C in NB_C:
        nb = fit_nb(pt, y_train, k, nb_C, seed)
        nb_val = np.asarray(pv @ nb[0].T) + nb[1]
        nbs.append((f1(y_val, nb_val), nb_C, nb, nb_val))
        grid.append({"stage": "nb", "C": nb_C, "val_macro_f1": nbs[-1][0]})
        say(f"hybrid NB-LR C={nb_C}: validation macro-F1 {nbs[-1][0]:.4f}")
    nb_f1, nb_C, nb, nb_val = max(nbs, key=lambda t: t[0])
    mixes = []
    for nb_w in NB_W:
        mixes.append((f1(y_val, combine_views(main_val, nb_val, nb_w)), -nb_w))
        grid.append({"stage": "nb weight", "w": nb_w, "val_macro_f1": mixes[-1][0]})
        say(f"hybrid + NB-LR weight {nb_w}: validation macro-F1 {mixes[-1][0]:.4f}")
    nb_w = -max(mixes)[1]

    ngram = {"n_max": N_MAX, "dim": dim, "max_tokens": int(max_tokens), **({"aspect": aspect} if aspect else {})}
    spec = {"kind": KIND, "labels": list(labels), "ngram": ngram,
            "dense": [[n, int(wd)] for n, wd in dense_names], "probe_C": probe_C, "C": C, "gpt_weight": w,
            "temperature": 1.0}
    if nb_w:
        spec["nb"] = {"C": nb_C, "weight": nb_w, "val_macro_f1": nb_f1}
    head = HybridHead(spec, _arrays(mu, sd, idf, coef, intercept, pw, pb, w, dim, k, nb if nb_w else None))
    val_logits = combine_views(main_val, nb_val, nb_w)
    spec["temperature"] = head.temperature = float(M.fit_temperature(val_logits, y_val))
    report = M.classification_report(y_val, np.exp(head.logprobs(val_ids, dv)), labels)
    ngram_only = max((t[0] for t in fits if t[1] == 0), default=None)
    return head, {"validation": report, "sklearn_val_logprobs": clf.predict_log_proba(_design(xv, gv, w)),
                  "val_logits": val_logits, "C": C, "gpt_weight": w, "nb_weight": nb_w, "nb_val_macro_f1": nb_f1,
                  "probe_val_macro_f1": probe_f1, "ngram_only_val_macro_f1": ngram_only, "grid": grid}


def refit_hybrid(head: HybridHead, ids, dense, y, *, seed: int = 0) -> HybridHead:
    """The head's chosen settings (probe C, C, GPT weight, NB-LR C and weight) fitted again on these rows
    (training + validation); the temperature is the validated fit's, and the spec says how many rows."""
    spec = dict(head.spec)
    k, dim = len(spec["labels"]), int(spec["ngram"]["dim"])
    ids = [np.asarray(s)[: head.max_tokens] for s in ids]
    y = np.asarray(y)
    dt = np.nan_to_num(np.asarray(dense, dtype=np.float64), nan=0.0)
    mu, sd = _scale(dt)
    zt = (dt - mu) / sd
    pw, pb = _coef(_logreg(spec["probe_C"], seed).fit(zt, y), k)
    w = spec["gpt_weight"]
    gt = _crossfit(zt, y, spec["probe_C"], k, seed) if w else None
    idf = _idf(ids, dim, head.aspect)
    xt = _sparse(ids, dim, idf, head.aspect)
    coef, intercept = _coef(_logreg(spec["C"], seed).fit(_design(xt, gt, w), y), k)
    nb = fit_nb(_presence(xt), y, k, spec["nb"]["C"], seed) if spec.get("nb") else None
    spec["refit_rows"] = len(y)
    return HybridHead(spec, _arrays(mu, sd, idf, coef, intercept, pw, pb, w, dim, k, nb))


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


def aspect_settings(ckpt, texts) -> dict | None:
    """The n-gram settings of the aspect view (runtime.hybrid.aspect_parts) when the rows are "term：text"
    input (lm.data.is_aspect_input), else None: the separator's token id, the special tokens before the
    term, and the window either side of it."""
    from .data import TERM_SEP, is_aspect_input

    if not is_aspect_input(texts):
        return None
    sep = ckpt.tokenizer.encode(TERM_SEP, add_special_tokens=False).ids
    if len(sep) != 1:  # a tokenizer that splits the separator: no aspect view
        return None
    policy = ckpt.policy
    skip = int(policy.add_bos and policy.bos_id is not None)
    return {"sep": int(sep[0]), "skip": skip, "window": ASPECT_WINDOW}


def train_hybrid(ckpt, tr_texts, tr_y, val_texts, val_y, labels, out_dir, *, max_tokens: int = 256, seed: int = 0,
                 refit: bool = True, progress: bool = False, log=None):
    """Fit the hybrid head on the frozen LM's features and write its files into `out_dir` (with `refit`,
    the chosen settings fitted again on training + validation rows; "term：text" rows get the aspect
    view). Returns (head, fit report, validation logits): the report's figures and the logits are the
    validated fit's."""
    names = dense_names(int(ckpt.config["n_embd"]))
    ids_t, bt = gpt_features(ckpt, tr_texts, max_tokens, progress=progress)
    ids_v, bv = gpt_features(ckpt, val_texts, max_tokens, progress=progress)
    cols = [n for n, _ in names]
    dt, dv = np.hstack([bt[c] for c in cols]), np.hstack([bv[c] for c in cols])
    aspect = aspect_settings(ckpt, list(tr_texts) + list(val_texts))
    if log and aspect:
        log(f"hybrid: rows are term：text input; n-grams of the term-masked text and of {ASPECT_WINDOW} tokens "
            "either side of the term")
    head, info = fit_hybrid(ids_t, dt, np.asarray(tr_y), ids_v, dv, np.asarray(val_y), labels, names,
                            max_tokens=max_tokens, seed=seed, aspect=aspect, log=log)
    info.pop("sklearn_val_logprobs")
    val_logits = info.pop("val_logits")
    final = refit_hybrid(head, ids_t + ids_v, np.vstack([dt, dv]), np.concatenate([tr_y, val_y]), seed=seed) \
        if refit else head
    final.save(out_dir)
    return final, info, val_logits


def hybrid_logprobs(ckpt, head: HybridHead, texts, progress: bool = False) -> np.ndarray:
    """Calibrated log-probs of a checkpoint's hybrid head, features computed in torch."""
    ids, blocks = gpt_features(ckpt, texts, head.max_tokens, blocks=tuple(n for n, _ in head.dense), progress=progress)
    return head.logprobs(ids, head.dense_matrix(blocks, len(ids)))

