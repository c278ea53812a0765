"""Training a sentiment head over a GPT-2 (P-tuning, full fine-tuning or a linear probe; see heads.py),
with the TF-IDF baseline on the same split, into a checkpoint directory (headfile.py) that
`gptquant export` turns into a bundle with sent_* columns."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GptquantError, require
from . import metrics as M
from .data import read_labelled, sample_shots, split
from .headfile import BASELINE_JSON, save_head

STATE_FILE = ".gptquant_sentiment_state.pt"  # resumable training state (dot-file: not part of the checkpoint hash)
DEFAULT_LR = {"ptuning": 3e-3, "finetune": 1e-4}
LINEAR_C = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


PARITY_SAMPLE = 64  # validation texts kept with the head: export's int8 gate checks the head on them


def parity_sample(texts, seed: int) -> list[str]:
    """A seeded sample of the head's own validation texts for export's parity gate."""
    pick = np.random.default_rng(seed).permutation(len(texts))[:PARITY_SAMPLE]
    return [texts[i] for i in sorted(pick)]


def _splits(data, valid, valid_frac, shots, seed, columns, labels):
    """(train texts, train ids, validation texts, validation ids, labels), K-shot sampled when asked."""
    texts, y, labels, groups = read_labelled(data, *columns, labels, with_groups=True)
    if valid is not None:
        vt, vy, _ = read_labelled(valid, *columns, labels)
        tr_texts, tr_y = texts, y
    else:
        if not 0 < valid_frac < 1:
            raise GptquantError(f"valid_frac must be in (0, 1), got {valid_frac}")
        tr, va = split(y, valid_frac, seed, groups)
        tr_texts, tr_y, vt, vy = [texts[i] for i in tr], y[tr], [texts[i] for i in va], y[va]
    if shots:
        keep = sample_shots(tr_y, int(shots), seed)
        tr_texts, tr_y = [tr_texts[i] for i in keep], tr_y[keep]
        vkeep = sample_shots(vy, int(shots), seed + 1)
        vt, vy = [vt[i] for i in vkeep], vy[vkeep]
    if len(vt) == 0 or len(tr_texts) == 0:
        raise GptquantError("training and validation splits must both be non-empty")
    return tr_texts, tr_y, vt, vy, labels


def _fit_linear(model, meta, tr_ids, tr_y, va_ids, vy, labels, pad, seed, progress):
    """A logistic regression on pooled states, C chosen on validation macro-F1, standardisation folded in."""
    from sklearn.linear_model import LogisticRegression

    from .baseline import _full_coef
    from .heads import build_head, pooled_states, torch

    xt = pooled_states(model, tr_ids, pad, progress=progress)
    xv = pooled_states(model, va_ids, pad, progress=progress)
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    best = None
    for C in LINEAR_C:
        clf = LogisticRegression(C=C, max_iter=3000, random_state=seed).fit((xt - mu) / sd, tr_y)
        w, b = _full_coef(clf, len(labels))
        w, b = w / sd, b - (w / sd) @ mu  # fold the standardisation into the weights
        f1 = M.classification_report(vy, xv @ w.T + b, labels)["macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, C, w, b)
    f1, C, w, b = best
    head = build_head({**meta}, model)
    head.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
    head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    meta["C"] = C
    return head, {"steps_run": 0, "best_val_macro_f1": f1}


def train_sentiment(model_dir, data, out_dir, method: str = "auto", *, labels=None, text_column=None,
                    label_column=None, term_column=None, valid=None, valid_frac: float = 0.1, shots: int | None = None,
                    steps: int | None = None, batch: int = 16, lr: float | None = None, max_length: int = 128,
                    seed: int = 0, eval_every: int | None = None, patience: int = 6, n_prefix: int = 3,
                    n_suffix: int = 3, verbalizers: dict | str | None = None, anchor: str | None = None,
                    resume: bool = True, progress: bool = True, threads: int | None = None, baseline: bool = True, test=None, methods=None,
                    budget_minutes: float | None = None, budget_s: float | None = None) -> dict:
    """Train a sentiment head (and the TF-IDF baseline on the same split) and write a checkpoint
    directory `out_dir` that `gptquant export` turns into a bundle with sent_* columns. Returns a summary
    with validation metrics for the head and the baseline. method "auto" trains every method on the same
    split and keeps the best (lm.auto); `test` (a labelled table) adds test figures to its table. Gradient
    methods without `steps` get a budget from the data size (lm.auto.budget). P-tuning: `anchor` adds fixed
    task words at the end of the template (heads.py); `verbalizers` is label->word pairs, None (跌/平/涨 for a
    known label order, else a heuristic) or "search" (label_search.py: chosen on validation rows)."""
    torch = require("torch", "train", "training a sentiment head")
    from .baseline import train_baseline
    from .checkpoint import load_checkpoint
    from .heads import METHODS, build_head, encode_ids, head_logits
    from .trainloop import fit_loop
    from .verbalizers import choose_verbalizers

    if method not in METHODS + ("hybrid", "auto"):
        raise GptquantError(f"unknown method {method!r} (one of {', '.join(METHODS + ('hybrid', 'auto'))})")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    columns = (text_column, label_column, term_column)
    tr_texts, tr_y, vt, vy, labels = _splits(data, valid, valid_frac, shots, seed, columns, labels)
    if method == "auto":
        from .auto import AUTO_METHODS, DEFAULT_BUDGET_MINUTES, train_auto

        def train_one(m, train_df, valid_df, sub, **kw):
            return train_sentiment(model_dir, train_df, sub, m, labels=labels, valid=valid_df, batch=batch, lr=lr,
                                   max_length=max_length, seed=seed, patience=patience, n_prefix=n_prefix,
                                   n_suffix=n_suffix, verbalizers=verbalizers, anchor=anchor, resume=resume,
                                   progress=progress, baseline=False, **kw)

        tests = None
        if test is not None:
            tt, ty, _ = read_labelled(test, *columns, labels)
            tests = (tt, ty)
        settings = {"base_sha256": load_checkpoint(model_dir, with_model=False).source_sha256(), "lr": lr,
                    "max_length": max_length, "seed": seed, "patience": patience, "n_prefix": n_prefix,
                    "n_suffix": n_suffix, "verbalizers": verbalizers, "anchor": anchor}
        return train_auto(model_dir, tr_texts, tr_y, vt, vy, labels, out_dir, train_one=train_one, test=tests,
                          methods=tuple(methods or AUTO_METHODS), batch=batch, progress=progress, settings=settings,
                          budget_minutes=DEFAULT_BUDGET_MINUTES if budget_minutes is None else budget_minutes)
    ckpt = load_checkpoint(model_dir)
    model = ckpt.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    anchor_ids = []
    if method == "ptuning" and anchor:
        from .verbalizers import encode_anchor

        anchor_ids = encode_anchor(ckpt, anchor)
    room = ckpt.config.get("n_positions", max_length) - n_prefix - n_suffix - len(anchor_ids)
    max_length = int(min(max_length, room))
    tr_ids, va_ids = encode_ids(ckpt, tr_texts, max_length), encode_ids(ckpt, vt, max_length)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_FILE
    meta = {"method": method, "labels": labels, "max_length": max_length, "seed": seed, "shots": shots,
            "n_train": len(tr_texts), "n_valid": len(vt), "base_sha256": ckpt.source_sha256(),
            "parity_texts": parity_sample(vt, seed)}
    pad = ckpt.policy.pad_id
    if method == "hybrid":
        return _train_hybrid(model_dir, ckpt, meta, tr_texts, tr_y, vt, vy, labels, out_dir, seed=seed,
                             progress=progress, baseline=baseline)

    if method == "linear":
        head, fit = _fit_linear(model, meta, tr_ids, tr_y, va_ids, vy, labels, pad, seed, progress)
    else:
        if method == "ptuning":
            if verbalizers == "search":
                from .label_search import search_verbalizers

                words, meta["verbalizer_search"] = search_verbalizers(ckpt, tr_texts, tr_y, vt, vy, labels,
                                                                      max_length=max_length, seed=seed,
                                                                      anchor_ids=anchor_ids)
            else:
                words = choose_verbalizers(ckpt, tr_texts, tr_y, labels, verbalizers, max_length, seed=seed,
                                           anchor_ids=anchor_ids)
            vocab = ckpt.tokenizer.get_vocab()
            meta.update(verbalizers=dict(zip(labels, words)), verbalizer_ids=[vocab[w] for w in words],
                        n_prefix=int(n_prefix), n_suffix=int(n_suffix), anchor=anchor or "", anchor_ids=anchor_ids)
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
        if steps is None:
            from .auto import budget

            plan = budget(method, len(tr_ids), batch)
            steps, eval_every = plan["steps"], eval_every or plan["eval_every"]
        eval_every = eval_every or 25
        meta.update(lr=lr, batch=batch, steps=steps)
        fit = fit_loop(head, params, tr_ids, tr_y, va_ids, vy, labels, steps=steps, batch=batch, lr=lr,
                       eval_every=eval_every, patience=patience, seed=seed, pad_id=pad, state_path=state_path,
                       resume=resume, progress=progress, train_mode_modules=frozen, budget_s=budget_s)
    head.eval()
    val_logits = head_logits(head, va_ids, pad)
    temperature = M.fit_temperature(val_logits, vy)
    head.temperature.fill_(temperature)
    val_probs = np.exp(M.log_softmax(val_logits, temperature))
    meta.update(temperature=temperature, training=fit,
                validation=M.classification_report(vy, val_probs, labels))
    meta["validation"]["ece_uncalibrated"] = M.ece(vy, np.exp(M.log_softmax(val_logits)))

    summary = {"method": method, "labels": labels, "validation": meta["validation"], "temperature": temperature}
    if baseline:
        base = train_baseline(tr_texts, tr_y, labels, vt, vy, seed=seed)
        base.save(out_dir / BASELINE_JSON)
        summary["baseline_validation"] = M.classification_report(vy, np.exp(M.log_softmax(base.logits(vt))), labels)
    save_head(model_dir, out_dir, head, meta)
    state_path.unlink(missing_ok=True)
    return summary


def _train_hybrid(model_dir, ckpt, meta, tr_texts, tr_y, vt, vy, labels, out_dir: Path, *, seed, progress, baseline):
    """The hybrid head (lm.hybrid): its files and gptquant_sentiment.json (method "hybrid") beside the base model.
    Its n-grams and GPT features are cut at export's default max_length, the length a bundle scores."""
    from .baseline import train_baseline
    from .export import DEFAULT_MAX_LENGTH
    from .headfile import save_meta
    from .hybrid import train_hybrid

    max_tokens = int(min(DEFAULT_MAX_LENGTH, ckpt.config.get("n_positions", DEFAULT_MAX_LENGTH)))
    head, info, val_logits = train_hybrid(ckpt, tr_texts, tr_y, vt, vy, labels, out_dir, max_tokens=max_tokens,
                                          seed=seed, progress=progress)
    meta.update(max_length=max_tokens, temperature=head.temperature, training={"steps_run": 0, **info},
                validation=info.pop("validation"))
    meta["training"].pop("validation", None)
    meta["validation"]["ece_uncalibrated"] = M.ece(vy, np.exp(M.log_softmax(val_logits)))
    summary = {"method": "hybrid", "labels": labels, "validation": meta["validation"], "temperature": head.temperature}
    if baseline:
        base = train_baseline(tr_texts, tr_y, labels, vt, vy, seed=seed)
        base.save(out_dir / BASELINE_JSON)
        summary["baseline_validation"] = M.classification_report(vy, np.exp(M.log_softmax(base.logits(vt))), labels)
    save_meta(model_dir, out_dir, meta)
    return summary
