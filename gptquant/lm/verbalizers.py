"""Verbalizers for P-tuning: one single-token word per label whose LM-head row reads the class out."""
from __future__ import annotations

import numpy as np

from ..errors import GptquantError
from ..tokenize import pad_batch, token_ids
from .data import KNOWN_ORDERS

VERBALIZER_TEMPLATE = "。这条消息对股价是"  # only used to pick verbalizer tokens automatically
DEFAULT_VERBALIZERS = {2: ("跌", "涨"), 3: ("跌", "平", "涨")}
CANDIDATE_VERBALIZERS = "涨跌平好坏升降稳强弱多空利亏赚喜忧增减高低正负买卖"


def _given(vocab: dict, labels, given: dict) -> list[str]:
    out = []
    for lab in labels:
        tok = given.get(lab)
        if tok is None:
            raise GptquantError(f"--verbalizer gives no token for label {lab!r}")
        if tok not in vocab:
            raise GptquantError(f"verbalizer {tok!r} for label {lab!r} is not a single token of the model's vocabulary")
        out.append(tok)
    if len(set(out)) != len(out):
        raise GptquantError(f"verbalizers must differ, got {out}")
    return out


def choose_verbalizers(ckpt, texts, y, labels, given: dict | None = None, max_length: int = 128,
                       sample: int = 400, seed: int = 0) -> list[str]:
    """One single-token verbalizer per label: the user's (--verbalizer), else the CJK character whose
    next-token log-prob after the text and a fixed cue best separates that class from the others."""
    from .heads import positions, torch

    vocab = ckpt.tokenizer.get_vocab()
    if given:
        return _given(vocab, labels, given)
    if len(labels) in (2, 3) and all(lab in vocab for lab in DEFAULT_VERBALIZERS[len(labels)]) and \
            any(tuple(labels) == tuple(order) for order in KNOWN_ORDERS):
        return list(DEFAULT_VERBALIZERS[len(labels)])  # a known negative→positive order: 跌/平/涨
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: max(1, sample // len(labels))]
                           for c in range(len(labels))])
    cue = ckpt.tokenizer.encode(VERBALIZER_TEMPLATE, add_special_tokens=False).ids
    ids = [s[: max_length - len(cue)] + cue for s in token_ids(ckpt.tokenizer, [texts[i] for i in pick], ckpt.policy)]
    x, m, _ = pad_batch(ids, 10**9, ckpt.policy.pad_id)
    model = ckpt.model.eval()
    rows = []
    with torch.no_grad():
        for b in range(0, len(x), 64):
            xb, mb = torch.from_numpy(x[b: b + 64]), torch.from_numpy(m[b: b + 64])
            h = model.transformer(input_ids=xb, attention_mask=mb, position_ids=positions(mb),
                                  use_cache=False).last_hidden_state
            rows.append(torch.log_softmax(model.lm_head(h[torch.arange(len(xb)), mb.sum(-1) - 1]), -1).double().numpy())
    lp = np.concatenate(rows)
    cand = [vocab[t] for t in CANDIDATE_VERBALIZERS if t in vocab]
    if len(cand) < len(labels):
        cand = [i for t, i in vocab.items() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    cand = np.array(cand)
    yp = y[pick]
    means = np.stack([lp[yp == c][:, cand].mean(0) for c in range(len(labels))])
    id_to_tok = {i: t for t, i in vocab.items()}
    out, used = [], set()
    for c in range(len(labels)):  # the candidate most raised by this class relative to the others
        score = means[c] - np.delete(means, c, axis=0).mean(0)
        j = next(j for j in np.argsort(-score) if cand[j] not in used)
        used.add(cand[j])
        out.append(id_to_tok[int(cand[j])])
    return out
