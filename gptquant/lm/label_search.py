"""Label words for P-tuning searched on validation (`--verbalizer search`), as "GPT Understands, Too"
chooses its label words, kept cheap enough for `train sentiment`'s budget.

1. Candidates: the TOP_K words per class by the class-separation score (verbalizers.separation) of the
   frozen LM's next-token log-probs after text + cue on a seeded training sample; the fixed 跌/平/涨 of a
   known label order join their classes, so the search can always keep them.
2. Every combination of distinct candidates (at most TOP_K+1 per class, 64 for three classes) is scored by
   the validation macro-F1 of the frozen LM reading the class zero-shot: the class whose word's log-prob
   after text + cue rises most above its mean on the training sample (contextual calibration), which keeps
   the word->class assignment P-tuning starts from. Two LM passes (sample + validation rows), no gradient.

Opt-in, not the default (benchmarks/ptuning_settings.py, FinFE, gpt2-zh-fin-mini, prompt 8,8, 800 steps):
the searched 买/平/增 trained to 0.535 validation macro-F1 and a probe-chosen 跌/负/增 (a logistic regression
on the words' log-probs instead, which ignores the assignment) to 0.530, against 0.550 for the fixed 跌/平/涨;
this 4-layer LM's zero-shot reading is weak (0.41-0.45 F1), so the search mostly ranks noise. It is for
label orders without fixed words, where the default is a heuristic that never looks at validation.

Only training and validation rows are read: the function is never given test rows.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import metrics as M
from .verbalizers import (candidate_ids, choose_verbalizers, cue_for, cue_logprobs, known_defaults, separation,
                          train_sample)

TOP_K = 3
BY = "validation macro-F1 of the frozen LM's calibrated zero-shot reading (word log-prob after the cue minus its training mean)"


def search_verbalizers(ckpt, tr_texts, tr_y, vt, vy, labels, *, max_length: int = 128, sample: int = 400,
                       seed: int = 0, anchor_ids=(), top_k: int = TOP_K) -> tuple[list[str], dict]:
    """(one word per label, a record for the head's JSON: cue, candidates, every combination's score)."""
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
        z = xv[:, cols] - xt[:, cols].mean(0)
        f1 = M.classification_report(vy, np.exp(M.log_softmax(z)), labels)["macro_f1"]
        scores["/".join(id_to_tok[i] for i in combo)] = round(float(f1), 6)
    if not scores:  # the classes share all their candidates: fall back to the distinct best per class
        words = choose_verbalizers(ckpt, tr_texts, tr_y, labels, None, max_length, sample, seed, anchor_ids)
        return words, {"by": "class separation (no distinct combination)", "cue": cue_text}
    best = max(scores, key=lambda w: (scores[w], -list(scores).index(w)))  # ties: the earlier combination
    record = {"by": BY, "cue": cue_text, "train_sample": int(len(pick)), "n_valid": int(len(vy)),
              "candidates": {lab: [id_to_tok[i] for i in row] for lab, row in zip(labels, cands)},
              "scores": dict(sorted(scores.items(), key=lambda kv: -kv[1])), "chosen": best.split("/")}
    return best.split("/"), record
