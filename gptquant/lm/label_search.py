"""Label words for P-tuning searched on validation (`--verbalizer search`), as "GPT Understands, Too"
chooses its label words, kept cheap enough for `train sentiment`'s budget.

1. Candidates: the TOP_K words per class by the class-separation score (verbalizers.separation) of the
   frozen LM's next-token log-probs after text + cue on a seeded training sample; the fixed 跌/平/涨 of a
   known label order join their classes, so the search can always keep them.
2. Every combination of distinct candidates (at most TOP_K+1 per class, 64 for three classes) is scored by
   the validation macro-F1 of a logistic regression fitted on the training sample's log-probs of those
   words: which rows of the LM head read the classes best once a readout is learnt, which is what P-tuning
   then learns with a prompt. Two LM passes (sample + validation rows), no gradient step.

Only training and validation rows are read: the function is never given test rows.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import metrics as M
from .verbalizers import (candidate_ids, choose_verbalizers, cue_for, cue_logprobs, known_defaults, separation,
                          train_sample)

TOP_K = 3
BY = "validation macro-F1 of a logistic regression on the frozen LM's log-probs of the words after the cue"


def search_verbalizers(ckpt, tr_texts, tr_y, vt, vy, labels, *, max_length: int = 128, sample: int = 400,
                       seed: int = 0, anchor_ids=(), top_k: int = TOP_K) -> tuple[list[str], dict]:
    """(one word per label, a record for the head's JSON: cue, candidates, every combination's score)."""
    from sklearn.linear_model import LogisticRegression

    vocab = ckpt.tokenizer.get_vocab()
    id_to_tok = {i: t for t, i in vocab.items()}
    k = len(labels)
    cue = cue_for(ckpt, anchor_ids)
    cue_text = ckpt.tokenizer.decode(cue).replace(" ", "")
    pick = train_sample(tr_y, k, sample, seed)
    pool = candidate_ids(vocab, k)
    lp_tr = cue_logprobs(ckpt, [tr_texts[i] for i in pick], cue, max_length)
    score = separation(lp_tr[:, pool], tr_y[pick], k)
    fixed = known_defaults(vocab, labels) or []
    cands = []
    for c in range(k):
        top = [int(pool[j]) for j in np.argsort(-score[c], kind="stable")[:top_k]]
        if fixed and vocab[fixed[c]] not in top:
            top.insert(0, vocab[fixed[c]])
        cands.append(top)
    used = sorted({i for row in cands for i in row})
    col = {i: j for j, i in enumerate(used)}
    xt = lp_tr[:, used]
    xv = cue_logprobs(ckpt, vt, cue, max_length)[:, used]
    scores = {}
    for combo in itertools.product(*cands):
        if len(set(combo)) < k:
            continue
        cols = [col[i] for i in combo]
        clf = LogisticRegression(max_iter=2000).fit(xt[:, cols], tr_y[pick])
        f1 = M.classification_report(vy, clf.predict_log_proba(xv[:, cols]), labels)["macro_f1"]
        scores["/".join(id_to_tok[i] for i in combo)] = round(float(f1), 6)
    if not scores:  # the classes share all their candidates: fall back to the distinct best per class
        words = choose_verbalizers(ckpt, tr_texts, tr_y, labels, None, max_length, sample, seed, anchor_ids)
        return words, {"by": "class separation (no distinct combination)", "cue": cue_text}
    best = max(scores, key=lambda w: (scores[w], -list(scores).index(w)))  # ties: the earlier combination
    record = {"by": BY, "cue": cue_text, "train_sample": int(len(pick)), "n_valid": int(len(vy)),
              "candidates": {lab: [id_to_tok[i] for i in row] for lab, row in zip(labels, cands)},
              "scores": dict(sorted(scores.items(), key=lambda kv: -kv[1])), "chosen": best.split("/")}
    return best.split("/"), record
