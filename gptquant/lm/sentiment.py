"""Sentiment heads over a GPT-2: P-tuning (the product's method), full fine-tuning and a linear probe.

P-tuning ("GPT Understands, Too", Liu et al. 2021): the LM stays frozen; a prompt encoder (bi-LSTM +
two-layer ReLU MLP) turns trainable pseudo-token seeds into continuous prompt embeddings placed around
the text — [BOS] P1..Pa text P(a+1)..P(a+b) — and the class is read at the last prompt position through
one verbalizer token per label (the LM head's rows for those tokens). Padding sits between the text and
the suffix prompt; the attention mask and cumulative position ids make that exact, so one batched pass
serves any text length. At export the prompt is constant, so it is computed once and baked in.

A trained head is written into a checkpoint directory (a copy of the base model plus
gptquant_sentiment.json / .safetensors and the TF-IDF baseline), which `gptquant export` picks up.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write, atomic_write_text
from ..errors import GptquantError, require
from ..tokenize import pad_batch, token_ids
from . import metrics as M

METHODS = ("ptuning", "finetune", "linear")
HEAD_JSON = "gptquant_sentiment.json"
HEAD_WEIGHTS = "gptquant_sentiment.safetensors"
BASELINE_JSON = "gptquant_baseline.json"
DETECTOR_JSON = "gptquant_detector.json"
STATE_FILE = ".gptquant_sentiment_state.pt"  # resumable training state (dot-file: not part of the checkpoint hash)
BASE_FILES = ("config.json", "generation_config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt",
              "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              DETECTOR_JSON)
# label sets whose order (negative, neutral, positive) we know; the runtime maps 3 labels by position
KNOWN_ORDERS = (("negative", "neutral", "positive"), ("neg", "neu", "pos"), ("利空", "中性", "利好"),
                ("消极", "中性", "积极"), ("负面", "中性", "正面"), ("down", "flat", "up"), ("0", "1", "2"),
                ("-1", "0", "1"), ("negative", "positive"), ("0", "1"))
DEFAULT_LR = {"ptuning": 3e-3, "finetune": 1e-4}
VERBALIZER_TEMPLATE = "。这条消息对股价是"  # only used to pick verbalizer tokens automatically
DEFAULT_VERBALIZERS = {2: ("跌", "涨"), 3: ("跌", "平", "涨")}
CANDIDATE_VERBALIZERS = "涨跌平好坏升降稳强弱多空利亏赚喜忧增减高低正负买卖"


def _torch():
    return require("torch", "train", "training a sentiment head")


# ---- data ------------------------------------------------------------------------------------------

def read_table(source) -> tuple[str, pd.DataFrame]:
    if isinstance(source, pd.DataFrame):
        return "<DataFrame>", source.reset_index(drop=True)
    path = Path(source)
    if not path.is_file():
        raise GptquantError(f"{path}: file not found")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return str(path), pd.read_parquet(path)
        if name.endswith((".jsonl", ".json")):
            return str(path), pd.read_json(path, lines=name.endswith(".jsonl"), dtype=False)
        try:
            return str(path), pd.read_csv(path, dtype=str, keep_default_na=False)
        except UnicodeDecodeError:
            return str(path), pd.read_csv(path, dtype=str, keep_default_na=False, encoding="gb18030")
    except (ValueError, OSError) as exc:
        raise GptquantError(f"{path}: unreadable table ({exc})") from None


def order_labels(names, labels=None) -> list[str]:
    """Label order: the user's, else a known negative→positive order, else refuse for 3 (the runtime's
    sent_neg/neu/pos columns go by position)."""
    present = sorted({str(x) for x in names})
    if labels:
        labels = [str(x) for x in labels]
        extra = sorted(set(present) - set(labels))
        if extra:
            raise GptquantError(f"labels {extra} in the data are not among --labels {labels}")
        return labels
    for order in KNOWN_ORDERS:
        if set(present) == set(order):
            return list(order)
    if len(present) == 3:
        raise GptquantError(f"cannot tell the negative/neutral/positive order of labels {present}: pass --labels NEG,NEU,POS")
    return present


def read_labelled(source, text_column=None, label_column=None, term_column=None, labels=None):
    """(texts, label ids, label names) from a table with a text and a label column. Aspect data: a term
    column makes the input "term：text". A row without text or label is an error naming the row."""
    name, df = read_table(source)
    text_column = text_column or next((c for c in ("text", "sentence", "content") if c in df.columns), None)
    if text_column not in df.columns:
        raise GptquantError(f"{name}: no text column (expected 'text' or pass --text-column), found {list(df.columns)}")
    label_column = label_column or next((c for c in ("label_name", "label") if c in df.columns), None)
    if label_column not in df.columns:
        raise GptquantError(f"{name}: no label column (expected 'label' or pass --label-column), found {list(df.columns)}")
    if term_column is None and "term" in df.columns:
        term_column = "term"
    if term_column is not None and term_column not in df.columns:
        raise GptquantError(f"{name}: no column {term_column!r}")
    texts, raw = [], []
    for i, (t, lab) in enumerate(zip(df[text_column], df[label_column]), start=1):
        if not isinstance(t, str) or not t.strip():
            raise GptquantError(f"{name}: row {i}: empty or missing {text_column!r}")
        if lab is None or (isinstance(lab, float) and np.isnan(lab)) or str(lab).strip() == "":
            raise GptquantError(f"{name}: row {i}: empty or missing {label_column!r}")
        texts.append(t)
        raw.append(str(lab).strip())
    if term_column is not None:
        texts = [f"{term}：{t}" for term, t in zip(df[term_column].astype(str), texts)]
    labels = order_labels(raw, labels)
    if len(labels) < 2:
        raise GptquantError(f"{name}: need at least 2 labels, found {labels}")
    index = {lab: k for k, lab in enumerate(labels)}
    return texts, np.array([index[x] for x in raw], dtype=np.int64), labels


def split(y, valid_frac: float, seed: int):
    """Stratified (train, validation) row indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 else None
    return train_test_split(idx, test_size=valid_frac, random_state=seed, stratify=strat)


def sample_shots(y, k: int, seed: int, exclude=()) -> np.ndarray:
    """K rows per class (all of a class when it has fewer), seeded."""
    rng = np.random.default_rng(seed)
    skip = set(int(i) for i in exclude)
    out = []
    for c in np.unique(y):
        pool = np.array([i for i in np.flatnonzero(y == c) if i not in skip])
        out.extend(rng.permutation(pool)[:k].tolist())
    return np.array(sorted(out), dtype=np.int64)


# ---- heads -------------------------------------------------------------------------------------------

def _heads():
    """The nn.Module classes (defined lazily: torch is imported only here)."""
    torch = _torch()
    nn = torch.nn

    class PTuningHead(nn.Module):
        """Frozen LM + prompt encoder; class log-probs from the verbalizer rows at the last position."""

        def __init__(self, lm, verb_w, n_prefix: int, n_suffix: int, max_text: int):
            super().__init__()
            hidden = verb_w.shape[1]
            self.lm = lm  # shared with the feature graph; never trained
            self.n_prefix, self.n_suffix, self.max_text = n_prefix, n_suffix, max_text
            self.seeds = nn.Embedding(n_prefix + n_suffix, hidden)
            self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=2, bidirectional=True, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.register_buffer("verb_w", verb_w.detach().clone())
            self.register_buffer("temperature", torch.ones(()))
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
            suf = p[self.n_prefix:].unsqueeze(0).expand(b, -1, -1)
            x = torch.cat([emb[:, :1], pre, emb[:, 1:], suf], dim=1)
            ones = attention_mask.new_ones
            m = torch.cat([attention_mask[:, :1], ones((b, self.n_prefix)), attention_mask[:, 1:],
                           ones((b, self.n_suffix))], dim=1)
            pos = (m.cumsum(-1) - 1).clamp(min=0)
            h = self.lm(inputs_embeds=x, attention_mask=m, position_ids=pos, use_cache=False).last_hidden_state
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
            pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            h = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
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
                pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
                hidden = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                                 use_cache=False).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            return pooled @ self.weight.t() + self.bias

        def forward(self, input_ids, attention_mask, hidden=None):
            return torch.log_softmax(self.logits(input_ids, attention_mask, hidden) / self.temperature, dim=-1)

    return PTuningHead, FinetuneHead, LinearHead


def build_head(meta: dict, model):
    """A head module for `meta` (gptquant_sentiment.json) on top of a loaded GPT2LMHeadModel."""
    torch = _torch()
    PTuningHead, FinetuneHead, LinearHead = _heads()
    k = len(meta["labels"])
    hidden = int(model.config.n_embd)
    if meta["method"] == "ptuning":
        ids = torch.tensor(meta["verbalizer_ids"], dtype=torch.long)
        max_text = int(model.config.n_positions) - meta["n_prefix"] - meta["n_suffix"]
        return PTuningHead(model.transformer, model.lm_head.weight[ids], meta["n_prefix"], meta["n_suffix"], max_text)
    if meta["method"] == "finetune":
        return FinetuneHead(copy.deepcopy(model.transformer), k)
    if meta["method"] == "linear":
        return LinearHead(model.transformer, np.zeros((k, hidden)), np.zeros(k))
    raise GptquantError(f"unknown sentiment method {meta['method']!r} (one of {', '.join(METHODS)})")


def _own_state(head) -> dict:
    """The head's own tensors: everything except the shared, frozen LM."""
    return {k: v.detach().contiguous().clone() for k, v in head.state_dict().items() if not k.startswith("lm.")}


def load_head(model_dir, ckpt=None):
    """(head module in eval mode with the fitted temperature, meta) from a trained checkpoint directory,
    or None when the directory holds no sentiment head."""
    model_dir = Path(model_dir)
    if not (model_dir / HEAD_JSON).is_file():
        return None
    from safetensors.torch import load_file

    from .checkpoint import load_checkpoint

    try:
        meta = json.loads((model_dir / HEAD_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GptquantError(f"{model_dir / HEAD_JSON}: unreadable ({exc})") from None
    if not (model_dir / HEAD_WEIGHTS).is_file():
        raise GptquantError(f"{model_dir}: {HEAD_JSON} present but {HEAD_WEIGHTS} missing")
    ckpt = ckpt or load_checkpoint(model_dir)
    head = build_head(meta, ckpt.model)
    state = load_file(str(model_dir / HEAD_WEIGHTS))
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("lm.")]
    if missing or unexpected:
        raise GptquantError(f"{model_dir / HEAD_WEIGHTS}: does not fit a {meta['method']} head "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return head.eval(), meta


def bundle_head(model_dir, ckpt):
    """What export bakes from a trained checkpoint: (head, labels, heads-for-the-manifest). The P-tuned
    prompt is baked to constants; the detector (if trained) rides along in the manifest."""
    heads = {}
    if (Path(model_dir) / DETECTOR_JSON).is_file():
        from .detector import load_detector

        heads["detector"] = load_detector(Path(model_dir) / DETECTOR_JSON)
    found = load_head(model_dir, ckpt)
    if found is None:
        return None, None, heads or None
    head, meta = found
    if meta["method"] == "ptuning":
        head.bake()
    heads["sentiment"] = {k: meta[k] for k in ("method", "labels", "temperature", "verbalizers", "n_prefix",
                                                "n_suffix", "validation") if k in meta}
    return head, list(meta["labels"]), heads


# ---- inference in torch ------------------------------------------------------------------------------

def encode_ids(ckpt, texts, max_length: int) -> list[list[int]]:
    return [s[:max_length] for s in token_ids(ckpt.tokenizer, texts, ckpt.policy)]


def head_logits(head, ids: list[list[int]], pad_id: int, batch: int = 64, progress: bool = False) -> np.ndarray:
    """Uncalibrated class logits [n, k] (temperature not applied), in input order."""
    torch = _torch()
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
    _, _, LinearHead = _heads()
    probe = LinearHead(model.transformer, np.eye(int(model.config.n_embd)), np.zeros(int(model.config.n_embd)))
    return head_logits(probe, ids, pad_id, batch, progress)


# ---- verbalizers ---------------------------------------------------------------------------------------

def choose_verbalizers(ckpt, texts, y, labels, given: dict | None = None, max_length: int = 128,
                       sample: int = 400, seed: int = 0) -> list[str]:
    """One single-token verbalizer per label: the user's (--verbalizer), else the CJK character whose
    next-token log-prob after the text and a fixed cue best separates that class from the others."""
    torch = _torch()
    vocab = ckpt.tokenizer.get_vocab()
    if given:
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
            pos = (mb.cumsum(-1) - 1).clamp(min=0)
            h = model.transformer(input_ids=xb, attention_mask=mb, position_ids=pos, use_cache=False).last_hidden_state
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


# ---- training -------------------------------------------------------------------------------------------

def _batch_indices(step: int, batch: int, n: int, seed: int) -> np.ndarray:
    """Rows of step `step` in a stream of per-epoch permutations: deterministic, so a resumed run
    sees exactly the batches it would have seen."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[pos: pos + batch - len(out)].tolist())
    return np.array(out)


def _fit_loop(head, params, train_ids, y_train, val_ids, y_val, labels, *, steps, batch, lr, eval_every, patience,
              seed, pad_id, state_path: Path, resume: bool, progress: bool, train_mode_modules=()) -> dict:
    """AdamW on `params`, validation macro-F1 every `eval_every` steps, early stopping after `patience`
    evaluations without improvement, best weights restored. State is saved at each evaluation."""
    torch = _torch()
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)))
    step, best, bad, best_state, history = 0, -1.0, 0, None, []
    if resume and state_path.is_file():
        st = torch.load(str(state_path), map_location="cpu", weights_only=True)
        head.load_state_dict(st["head"], strict=False)
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step, best, bad, best_state = int(st["step"]), float(st["best"]), int(st["bad"]), st["best_state"]
        history = json.loads(st["history"])
    yt = torch.from_numpy(np.asarray(y_train))
    bar = tqdm(total=steps, initial=step, disable=not progress or None, desc="train")
    stopped = False
    while step < steps and not stopped:
        head.train()
        for mod in train_mode_modules:
            mod.eval()  # the frozen LM keeps dropout off
        idx = _batch_indices(step, batch, len(train_ids), seed)
        x, m, _ = pad_batch([train_ids[i] for i in idx], 10**9, pad_id)
        loss = torch.nn.functional.cross_entropy(head.logits(torch.from_numpy(x), torch.from_numpy(m)), yt[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if step % eval_every == 0 or step == steps:
            score = M.classification_report(y_val, head_logits(head, val_ids, pad_id), labels)["macro_f1"]
            history.append({"step": step, "loss": loss.item(), "val_macro_f1": score})
            bar.set_postfix(loss=f"{loss.item():.3f}", val_f1=f"{score:.3f}")
            if score > best:
                best, bad, best_state = score, 0, _own_state(head)
            else:
                bad += 1
                stopped = bad >= patience
            state = {"head": _own_state(head), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                     "best": best, "bad": bad, "best_state": best_state, "history": json.dumps(history)}
            atomic_write(state_path, lambda tmp: torch.save(state, tmp))
    bar.close()
    if best_state is not None:
        head.load_state_dict(best_state, strict=False)
    return {"steps_run": step, "best_val_macro_f1": best, "early_stopped": stopped, "history": history}


def train_sentiment(model_dir, data, out_dir, method: str = "ptuning", *, labels=None, text_column=None,
                    label_column=None, term_column=None, valid=None, valid_frac: float = 0.1, shots: int | None = None,
                    steps: int = 300, batch: int = 16, lr: float | None = None, max_length: int = 128, seed: int = 0,
                    eval_every: int = 25, patience: int = 6, n_prefix: int = 3, n_suffix: int = 3,
                    verbalizers: dict | None = None, resume: bool = True, progress: bool = True,
                    threads: int | None = None, baseline: bool = True) -> dict:
    """Train a sentiment head (and the TF-IDF baseline on the same split) and write a checkpoint
    directory `out_dir` that `gptquant export` turns into a bundle with sent_* columns. Returns a summary
    with validation metrics for the head and the baseline."""
    torch = _torch()
    from safetensors.torch import save_file

    from .baseline import train_baseline
    from .checkpoint import load_checkpoint

    if method not in METHODS:
        raise GptquantError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    texts, y, labels = read_labelled(data, text_column, label_column, term_column, labels)
    if valid is not None:
        vt, vy, _ = read_labelled(valid, text_column, label_column, term_column, labels)
        tr_texts, tr_y = texts, y
    else:
        if not 0 < valid_frac < 1:
            raise GptquantError(f"valid_frac must be in (0, 1), got {valid_frac}")
        tr, va = split(y, valid_frac, seed)
        tr_texts, tr_y, vt, vy = [texts[i] for i in tr], y[tr], [texts[i] for i in va], y[va]
    if shots:
        keep = sample_shots(tr_y, int(shots), seed)
        tr_texts, tr_y = [tr_texts[i] for i in keep], tr_y[keep]
        vkeep = sample_shots(vy, int(shots), seed + 1)
        vt, vy = [vt[i] for i in vkeep], vy[vkeep]
    if len(vt) == 0 or len(tr_texts) == 0:
        raise GptquantError("training and validation splits must both be non-empty")

    ckpt = load_checkpoint(model_dir)
    model = ckpt.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    max_length = int(min(max_length, ckpt.config.get("n_positions", max_length) - n_prefix - n_suffix))
    tr_ids, va_ids = encode_ids(ckpt, tr_texts, max_length), encode_ids(ckpt, vt, max_length)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_FILE
    meta = {"method": method, "labels": labels, "max_length": max_length, "seed": seed, "shots": shots,
            "n_train": len(tr_texts), "n_valid": len(vt), "base_sha256": ckpt.source_sha256()}
    pad = ckpt.policy.pad_id

    if method == "linear":
        from sklearn.linear_model import LogisticRegression

        xt = pooled_states(model, tr_ids, pad, progress=progress)
        xv = pooled_states(model, va_ids, pad, progress=progress)
        mu, sd = xt.mean(0), xt.std(0) + 1e-6
        best = None
        for C in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
            clf = LogisticRegression(C=C, max_iter=3000, random_state=seed).fit((xt - mu) / sd, tr_y)
            from .baseline import _full_coef

            w, b = _full_coef(clf, len(labels))
            w, b = w / sd, b - (w / sd) @ mu  # fold the standardisation into the weights
            f1 = M.classification_report(vy, xv @ w.T + b, labels)["macro_f1"]
            if best is None or f1 > best[0]:
                best = (f1, C, w, b)
        _, C, w, b = best
        head = build_head({**meta}, model)
        head.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
        meta["C"] = C
        fit = {"steps_run": 0, "best_val_macro_f1": best[0]}
    else:
        if method == "ptuning":
            words = choose_verbalizers(ckpt, tr_texts, tr_y, labels, verbalizers, max_length, seed=seed)
            vocab = ckpt.tokenizer.get_vocab()
            meta.update(verbalizers=dict(zip(labels, words)), verbalizer_ids=[vocab[w] for w in words],
                        n_prefix=int(n_prefix), n_suffix=int(n_suffix))
            if n_suffix < 1:
                raise GptquantError("P-tuning needs at least one suffix prompt token (the readout position)")
            head = build_head(meta, model)
            params = [p for n, p in head.named_parameters() if not n.startswith("lm.")]
            frozen = (model,)
        else:
            head = build_head(meta, model)
            for p in head.body.parameters():
                p.requires_grad_(True)
            params = list(head.parameters())
            frozen = ()
        lr = lr or DEFAULT_LR[method]
        meta.update(lr=lr, batch=batch, steps=steps)
        fit = _fit_loop(head, params, tr_ids, tr_y, va_ids, vy, labels, steps=steps, batch=batch, lr=lr,
                        eval_every=eval_every, patience=patience, seed=seed, pad_id=pad, state_path=state_path,
                        resume=resume, progress=progress, train_mode_modules=frozen)
    head.eval()
    val_logits = head_logits(head, va_ids, pad)
    temperature = M.fit_temperature(val_logits, vy)
    head.temperature.fill_(temperature)
    val_probs = np.exp(M.log_softmax(val_logits, temperature))
    meta.update(temperature=temperature, training=fit,
                validation=M.classification_report(vy, val_probs, labels))
    meta["validation"]["ece_uncalibrated"] = M.ece(vy, np.exp(M.log_softmax(val_logits)))

    _copy_base(Path(model_dir), out_dir)
    atomic_write(out_dir / HEAD_WEIGHTS, lambda tmp: save_file(_own_state(head), tmp))
    summary = {"method": method, "labels": labels, "validation": meta["validation"], "temperature": temperature}
    if baseline:
        base = train_baseline(tr_texts, tr_y, labels, vt, vy, seed=seed)
        base.save(out_dir / BASELINE_JSON)
        summary["baseline_validation"] = M.classification_report(vy, np.exp(M.log_softmax(base.logits(vt))), labels)
    atomic_write_text(out_dir / HEAD_JSON, json.dumps(meta, ensure_ascii=False, indent=2))
    state_path.unlink(missing_ok=True)
    return summary


def _copy_base(src: Path, dst: Path) -> None:
    """The base checkpoint's files beside the head, so the output directory is a complete checkpoint."""
    if src.resolve() == dst.resolve():
        return
    for name in BASE_FILES:
        if (src / name).is_file():
            atomic_write(dst / name, lambda tmp: shutil.copyfile(src / name, tmp))


# ---- evaluation ------------------------------------------------------------------------------------------

def predict_probs(model_path, texts, batch: int = 64, progress: bool = False,
                  max_length: int = 256) -> tuple[np.ndarray, list[str]]:
    """Calibrated class probabilities from a trained checkpoint (torch) or an exported bundle (onnxruntime).
    A checkpoint's texts are cut to `max_length` tokens like an exported bundle's (export's default 256)."""
    path = Path(model_path)
    if (path / "manifest.json").is_file():
        from ..runtime.scorer import Scorer, label_columns

        scorer = Scorer(path, batch_size=batch)
        if not scorer.labels:
            raise GptquantError(f"{path}: bundle has no sentiment head")
        df = scorer.score(list(texts))
        return df[label_columns(scorer.labels)].to_numpy(dtype=np.float64), list(scorer.labels)
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
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
    elif (path / HEAD_JSON).is_file():
        labels = json.loads((path / HEAD_JSON).read_text(encoding="utf-8")).get("labels")
    else:
        raise GptquantError(f"{path}: neither a bundle nor a checkpoint with a trained sentiment head")
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
        name = path.name
        if (path / HEAD_JSON).is_file():
            name = f"{path.name} ({json.loads((path / HEAD_JSON).read_text(encoding='utf-8'))['method']})"
        results[name] = M.classification_report(y, probs, labels)
        if baseline and (path / BASELINE_JSON).is_file():
            base = Baseline.load(path / BASELINE_JSON)
            if base.labels != labels:
                raise GptquantError(f"{path / BASELINE_JSON}: labels {base.labels} differ from the head's {labels}")
            results[f"{path.name} (tfidf baseline)"] = M.classification_report(
                y, np.exp(M.log_softmax(base.logits(texts))), labels)
    return results
