"""Verbalizers for P-tuning: one single-token word per label whose LM-head row reads the class out, and
the anchor (fixed task words at the end of the template, see heads.py)."""
from __future__ import annotations

import numpy as np

from ..errors import GptquantError
from ..text import normalize_text
from ..tokenize import pad_batch, token_ids
from .data import KNOWN_ORDERS

VERBALIZER_TEMPLATE = "。这条消息对股价是"  # the cue words are scored after when no anchor is given
DEFAULT_VERBALIZERS = {2: ("跌", "涨"), 3: ("跌", "平", "涨")}
CANDIDATE_VERBALIZERS = "涨跌平好坏升降稳强弱多空利亏赚喜忧增减高低正负买卖"


def encode_anchor(ckpt, text: str) -> list[int]:
    """Token ids of the anchor words (normalised like the texts), refused when they tokenize to nothing."""
    ids = ckpt.tokenizer.encode(normalize_text(text), add_special_tokens=False).ids
    if not ids:
        raise GptquantError(f"--anchor {text!r} tokenizes to nothing with this model's tokenizer; give real words "
                            "(e.g. 这条消息对股价是) or leave --anchor out")
    return ids


def known_defaults(vocab: dict, labels) -> list[str] | None:
    """跌/(平/)涨 when the labels are a known negative→positive order and the words are tokens, else None."""
    if len(labels) in (2, 3) and all(lab in vocab for lab in DEFAULT_VERBALIZERS[len(labels)]) and \
            any(tuple(labels) == tuple(order) for order in KNOWN_ORDERS):
        return list(DEFAULT_VERBALIZERS[len(labels)])
    return None


def candidate_ids(vocab: dict, n_labels: int) -> np.ndarray:
    """The candidate label words' ids: the finance word list, or every CJK character if it is too short."""
    cand = [vocab[t] for t in CANDIDATE_VERBALIZERS if t in vocab]
    if len(cand) < n_labels:
        cand = [i for t, i in vocab.items() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    return np.array(cand)


def cue_logprobs(ckpt, texts, cue: list[int], max_length: int, batch: int = 64) -> np.ndarray:
    """Frozen LM next-token log-probs [n, vocab] after each text followed by the cue ids."""
    from .heads import positions, torch

    ids = [s[: max_length - len(cue)] + cue for s in token_ids(ckpt.tokenizer, texts, ckpt.policy)]
    model = ckpt.model.eval()
    rows = []
    with torch.no_grad():
        for b in range(0, len(ids), batch):
            x, m, _ = pad_batch(ids[b: b + batch], 10**9, ckpt.policy.pad_id)
            xb, mb = torch.from_numpy(x), torch.from_numpy(m)
            h = model.transformer(input_ids=xb, attention_mask=mb, position_ids=positions(mb),
                                  use_cache=False).last_hidden_state
            rows.append(torch.log_softmax(model.lm_head(h[torch.arange(len(xb)), mb.sum(-1) - 1]), -1).double().numpy())
    return np.concatenate(rows)


def separation(lp: np.ndarray, y: np.ndarray, n_labels: int) -> np.ndarray:
    """[labels, candidates]: how much each class raises each candidate's log-prob relative to the others."""
    means = np.stack([lp[y == c].mean(0) for c in range(n_labels)])
    return np.stack([means[c] - np.delete(means, c, axis=0).mean(0) for c in range(n_labels)])


def train_sample(y, n_labels: int, sample: int, seed: int) -> np.ndarray:
    """Up to sample/n_labels seeded training rows per class."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(y == c))[: max(1, sample // n_labels)]
                           for c in range(n_labels)])


def cue_for(ckpt, anchor_ids) -> list[int]:
    """The words candidates are scored after: the anchor when there is one, else VERBALIZER_TEMPLATE."""
    return list(anchor_ids) or ckpt.tokenizer.encode(VERBALIZER_TEMPLATE, add_special_tokens=False).ids


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
                       sample: int = 400, seed: int = 0, anchor_ids=()) -> list[str]:
    """One single-token verbalizer per label: the user's (--verbalizer), else 跌/平/涨 for a known order, else
    the candidate whose next-token log-prob after the text and the cue best separates that class."""
    vocab = ckpt.tokenizer.get_vocab()
    if given:
        return _given(vocab, labels, given)
    fixed = known_defaults(vocab, labels)
    if fixed:
        return fixed
    pick = train_sample(y, len(labels), sample, seed)
    cand = candidate_ids(vocab, len(labels))
    score = separation(cue_logprobs(ckpt, [texts[i] for i in pick], cue_for(ckpt, anchor_ids), max_length)[:, cand],
                       y[pick], len(labels))
    id_to_tok = {i: t for t, i in vocab.items()}
    out, used = [], set()
    for c in range(len(labels)):  # the candidate most raised by this class relative to the others
        j = next(j for j in np.argsort(-score[c]) if cand[j] not in used)
        used.add(cand[j])
        out.append(id_to_tok[int(cand[j])])
    return out
