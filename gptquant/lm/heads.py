"""Sentiment heads over a GPT-2, as torch modules: P-tuning (the product's method), full fine-tuning and a
linear probe, plus running a head over token ids in batches.

P-tuning ("GPT Understands, Too", Liu et al. 2021): the LM stays frozen; a prompt encoder (bi-LSTM +
two-layer ReLU MLP) turns trainable pseudo-token seeds into continuous prompt embeddings placed around
the text — [BOS] P1..Pa text P(a+1)..P(a+b) [anchor] — and the class is read at the last position through
one verbalizer token per label (the LM head's rows for those tokens). The optional anchor is the paper's
fixed task words (e.g. "这条消息对股价是"), real token embeddings that are never trained. It sits last, right
before the readout: there the LM's own next-token habit (cue -> 跌/涨) does the reading, the same cue the
label-word search scores candidates with (label_search.py), and the pseudo tokens in front of it are free to
steer it. Padding sits between the text and the suffix prompt; the attention mask and cumulative position
ids make that exact, so one batched pass serves any text length. At export the prompt is constant, so it is
computed once and baked in; the anchor ids are constants of the graph.
"""
from __future__ import annotations

import copy

import numpy as np

from ..errors import GptquantError, require
from ..tokenize import pad_batch, token_ids

torch = require("torch", "train", "training a sentiment head")
nn = torch.nn

METHODS = ("ptuning", "finetune", "linear")


def positions(attention_mask):
    """Position ids that skip padding (0, 1, 2 ... over the real tokens)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


class PTuningHead(nn.Module):
    """Frozen LM + prompt encoder; class log-probs from the verbalizer rows at the last position."""

    def __init__(self, lm, verb_w, n_prefix: int, n_suffix: int, max_text: int, anchor_ids=()):
        super().__init__()
        hidden = verb_w.shape[1]
        self.lm = lm  # shared with the feature graph; never trained
        self.n_prefix, self.n_suffix, self.max_text = n_prefix, n_suffix, max_text
        self.seeds = nn.Embedding(n_prefix + n_suffix, hidden)
        self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=2, bidirectional=True, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.register_buffer("verb_w", verb_w.detach().clone())
        self.register_buffer("temperature", torch.ones(()))
        self.anchor_ids = torch.tensor(list(anchor_ids), dtype=torch.long)  # fixed words, not a saved tensor
        self.baked = None

    def prompts(self):
        if self.baked is not None:
            return self.baked
        out, _ = self.lstm(self.seeds.weight.unsqueeze(0))
        return self.mlp(out)[0]

    def bake(self):
        """Compute the (constant) prompt once, so the graph holds embeddings, not the LSTM."""
        with torch.no_grad():
            self.baked = None
            self.baked = self.prompts().detach().clone()
        return self

    def logits(self, input_ids, attention_mask):
        input_ids, attention_mask = input_ids[:, : self.max_text], attention_mask[:, : self.max_text]
        p = self.prompts()
        b = input_ids.shape[0]
        emb = self.lm.wte(input_ids)
        pre = p[: self.n_prefix].unsqueeze(0).expand(b, -1, -1)
        suf = p[self.n_prefix:]
        if len(self.anchor_ids):
            suf = torch.cat([suf, self.lm.wte(self.anchor_ids)], dim=0)
        x = torch.cat([emb[:, :1], pre, emb[:, 1:], suf.unsqueeze(0).expand(b, -1, -1)], dim=1)
        ones = attention_mask.new_ones
        m = torch.cat([attention_mask[:, :1], ones((b, self.n_prefix)), attention_mask[:, 1:],
                       ones((b, suf.shape[0]))], dim=1)
        h = self.lm(inputs_embeds=x, attention_mask=m, position_ids=positions(m), use_cache=False).last_hidden_state
        return h[:, -1] @ self.verb_w.t()

    def forward(self, input_ids, attention_mask):
        return torch.log_softmax(self.logits(input_ids, attention_mask) / self.temperature, dim=-1)


class FinetuneHead(nn.Module):
    """Its own copy of the transformer, trained whole, with a linear readout at the last real token.
    The bundle's LM features keep coming from the untouched base model."""

    def __init__(self, body, n_labels: int):
        super().__init__()
        self.body = body
        self.classifier = nn.Linear(body.config.n_embd, n_labels)
        self.register_buffer("temperature", torch.ones(()))

    def logits(self, input_ids, attention_mask):
        h = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask),
                      use_cache=False).last_hidden_state
        last = (attention_mask.sum(-1) - 1).clamp(min=0)
        return self.classifier(h[torch.arange(h.shape[0]), last])

    def forward(self, input_ids, attention_mask):
        return torch.log_softmax(self.logits(input_ids, attention_mask) / self.temperature, dim=-1)


class LinearHead(nn.Module):
    """Logistic regression on the masked-mean final hidden state. In the bundle it reads the feature
    graph's hidden states (takes_hidden), so the LM runs once."""

    takes_hidden = True

    def __init__(self, lm, weight, bias):
        super().__init__()
        self.lm = lm
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))
        self.register_buffer("temperature", torch.ones(()))

    def logits(self, input_ids, attention_mask, hidden=None):
        if hidden is None:
            hidden = self.lm(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=positions(attention_mask), use_cache=False).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled @ self.weight.t() + self.bias

    def forward(self, input_ids, attention_mask, hidden=None):
        return torch.log_softmax(self.logits(input_ids, attention_mask, hidden) / self.temperature, dim=-1)


def build_head(meta: dict, model):
    """A head module for `meta` (gptquant_sentiment.json) on top of a loaded GPT2LMHeadModel."""
    k = len(meta["labels"])
    hidden = int(model.config.n_embd)
    if meta["method"] == "ptuning":
        ids = torch.tensor(meta["verbalizer_ids"], dtype=torch.long)
        anchor = meta.get("anchor_ids") or []
        max_text = int(model.config.n_positions) - meta["n_prefix"] - meta["n_suffix"] - len(anchor)
        return PTuningHead(model.transformer, model.lm_head.weight[ids], meta["n_prefix"], meta["n_suffix"], max_text,
                           anchor)
    if meta["method"] == "finetune":
        return FinetuneHead(copy.deepcopy(model.transformer), k)
    if meta["method"] == "linear":
        return LinearHead(model.transformer, np.zeros((k, hidden)), np.zeros(k))
    raise GptquantError(f"unknown sentiment method {meta['method']!r} (one of {', '.join(METHODS)})")


def own_state(head) -> dict:
    """The head's own tensors: everything except the shared, frozen LM."""
    return {k: v.detach().contiguous().clone() for k, v in head.state_dict().items() if not k.startswith("lm.")}


def encode_ids(ckpt, texts, max_length: int) -> list[list[int]]:
    return [s[:max_length] for s in token_ids(ckpt.tokenizer, texts, ckpt.policy)]


def head_logits(head, ids: list[list[int]], pad_id: int, batch: int = 64, progress: bool = False) -> np.ndarray:
    """Uncalibrated class logits [n, k] (temperature not applied), in input order."""
    from tqdm.auto import tqdm

    order = np.argsort([len(s) for s in ids], kind="stable")
    out = np.zeros((len(ids), 0), dtype=np.float64)
    rows = {}
    head.eval()
    with torch.no_grad():
        for b in tqdm(range(0, len(order), batch), disable=not progress or None, desc="predict", leave=False):
            idx = order[b: b + batch]
            x, m, _ = pad_batch([ids[i] for i in idx], 10**9, pad_id)
            lg = head.logits(torch.from_numpy(x), torch.from_numpy(m)).double().numpy()
            rows.update(zip(idx.tolist(), lg))
    if rows:
        out = np.stack([rows[i] for i in range(len(ids))])
    return out


def pooled_states(model, ids, pad_id: int, batch: int = 64, progress: bool = False) -> np.ndarray:
    """Masked-mean final hidden states [n, hidden] from the frozen LM (the linear probe's features)."""
    probe = LinearHead(model.transformer, np.eye(int(model.config.n_embd)), np.zeros(int(model.config.n_embd)))
    return head_logits(probe, ids, pad_id, batch, progress)
