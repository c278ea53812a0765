"""`gptquant train sentiment --method auto` (the default): every head on one split, the best by validation
macro-F1, and one table that says why.

Each method trains into OUT/.auto/<method> (a finished one is reused, an interrupted one resumes, both only
when its key -- gptquant's code, the settings, the base model's sha256 and the rows of both splits -- is
unchanged), with
budgets from the data size: the gradient methods get EPOCHS passes over the training rows and stop early
only when neither validation loss nor macro-F1 has improved for `patience` evaluations. A method whose
measured speed projects past `budget_minutes` is skipped and the table says so. The winner's files are
copied into OUT, with the table in its gptquant_sentiment.json under "auto".
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write, atomic_write_text
from ..errors import GptquantError
from . import metrics as M

AUTO_METHODS = ("linear", "hybrid", "finetune", "ptuning")
EPOCHS = {"finetune": 4, "ptuning": 8}
MIN_STEPS = 100
EVALS_PER_EPOCH = 4
DEFAULT_BUDGET_MINUTES = 15.0
BUDGET_PROBE = 10  # steps timed before a method's whole budget is projected
KEY_FILE = ".auto-key"  # beside a method's files; a dot name, so never copied into OUT


class OverBudget(GptquantError):
    """A method's measured speed projects past its time budget."""


def budget(method: str, n_train: int, batch: int) -> dict:
    """Steps and evaluation cadence for a gradient method from the number of training rows."""
    per_epoch = max(1, math.ceil(n_train / batch))
    steps = max(MIN_STEPS, EPOCHS[method] * per_epoch)
    return {"steps": steps, "eval_every": max(10, per_epoch // EVALS_PER_EPOCH)}


def run_key(method: str, settings: dict, tr_texts, tr_y, vt, vy) -> str:
    """sha256 of what a method's result depends on: gptquant's own code, its settings (base model hash
    included) and every training and validation row with its label."""
    from ..codehash import package_hash

    h = hashlib.sha256(json.dumps({"method": method, "gptquant": package_hash(), **settings}, sort_keys=True,
                                  default=str).encode("utf-8"))
    for texts, ys in ((tr_texts, tr_y), (vt, vy)):
        h.update(b"\x00split")
        for t, y in zip(texts, ys):
            h.update(f"{int(y)}\t{t}\x00".encode("utf-8"))
    return h.hexdigest()


def train_auto(model_dir, tr_texts, tr_y, vt, vy, labels, out_dir, *, train_one, test=None,
               methods=AUTO_METHODS, batch: int = 16, budget_minutes: float | None = DEFAULT_BUDGET_MINUTES,
               settings: dict | None = None, progress: bool = True, log=print) -> dict:
    """Train `methods` with `train_one(method, train_df, valid_df, out, **budget)` (lm.sentiment's trainer)
    on the given split, copy the best into `out_dir` and return the summary with the table. `settings`:
    everything else the trainer's result depends on, in each method's key."""
    from .baseline import train_baseline
    from .evaluate import predict_probs
    from .headfile import BASELINE_JSON, HEAD_JSON, read_head_meta

    out_dir = Path(out_dir)
    work = out_dir / ".auto"
    work.mkdir(parents=True, exist_ok=True)
    frame = lambda t, y: pd.DataFrame({"text": list(t), "label": [labels[i] for i in y]})  # noqa: E731
    train_df, valid_df = frame(tr_texts, tr_y), frame(vt, vy)
    test_texts, test_y = test if test is not None else (None, None)
    table = {}
    for method in methods:
        sub = work / method
        row = table[method] = {}
        key = run_key(method, {**(settings or {}), "labels": labels, "batch": batch}, tr_texts, tr_y, vt, vy)
        if sub.exists() and _read_key(sub) != key:  # another split, model or setting: start again
            log(f"auto: {method} in {sub} was trained on other rows or settings; training it again")
            shutil.rmtree(sub)
        if read_head_meta(sub) is None:
            sub.mkdir(parents=True, exist_ok=True)
            atomic_write_text(sub / KEY_FILE, key)
            kw = budget(method, len(tr_texts), batch) if method in EPOCHS else {}
            if kw and budget_minutes:
                kw["budget_s"] = 60.0 * budget_minutes
            log(f"auto: training {method}" + (f" ({kw['steps']} steps at most)" if kw else ""))
            try:
                train_one(method, train_df, valid_df, sub, **kw)
            except OverBudget as exc:
                row["skipped"] = str(exc)
                log(f"auto: {method} skipped: {exc}")
                continue
        meta = read_head_meta(sub)
        row["validation"] = meta["validation"]
        row["steps_run"] = (meta.get("training") or {}).get("steps_run")
        if test_texts is not None:
            probs, _ = predict_probs(sub, test_texts)
            row["test"] = M.classification_report(test_y, probs, labels)
    trained = {m: r for m, r in table.items() if "validation" in r}
    if not trained:
        raise GptquantError("auto: no method finished within its budget; raise --budget-minutes")
    best = max(trained, key=lambda m: (trained[m]["validation"]["macro_f1"], -AUTO_METHODS.index(m)))
    base = train_baseline(tr_texts, tr_y, labels, vt, vy)
    table["tfidf"] = {"validation": M.classification_report(vy, np.exp(M.log_softmax(base.logits(vt))), labels)}
    if test_texts is not None:
        table["tfidf"]["test"] = M.classification_report(test_y, np.exp(M.log_softmax(base.logits(test_texts))), labels)
    for p in (work / best).iterdir():
        if p.is_file() and not p.name.startswith(".") and p.name != HEAD_JSON:
            atomic_write(out_dir / p.name, lambda tmp, src=p: shutil.copyfile(src, tmp))
    base.save(out_dir / BASELINE_JSON)
    meta = read_head_meta(work / best)
    meta["auto"] = {"picked": best, "by": "validation macro-F1", "table": _slim(table)}
    atomic_write_text(out_dir / HEAD_JSON, json.dumps(meta, ensure_ascii=False, indent=2))  # last: marks done
    return {"method": best, "labels": labels, "validation": meta["validation"], "temperature": meta["temperature"],
            "baseline_validation": table["tfidf"]["validation"], "auto": meta["auto"], "table": table}


def _read_key(sub: Path) -> str | None:
    try:
        return (sub / KEY_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _slim(table: dict) -> dict:
    """The table as stored: accuracy / macro-F1 / n per split, the steps run, or why a method was skipped."""
    out = {}
    for m, row in table.items():
        out[m] = {k: v for k, v in row.items() if k in ("skipped", "steps_run")}
        for split in ("validation", "test"):
            if split in row:
                out[m][split] = {k: row[split][k] for k in ("n", "accuracy", "macro_f1")}
    return out


def format_auto(table: dict, picked: str) -> str:
    """One line per method: validation and (when given) test accuracy / macro-F1, beside TF-IDF."""
    has_test = any("test" in r for r in table.values())
    head = f"{'method':<10}{'val acc':>9}{'val F1':>8}" + (f"{'test acc':>10}{'test F1':>9}" if has_test else "")
    lines = [head + "  note"]
    for m, r in table.items():
        if "skipped" in r:
            lines.append(f"{m:<10}{'-':>9}{'-':>8}" + (f"{'-':>10}{'-':>9}" if has_test else "") + f"  skipped: {r['skipped']}")
            continue
        v = r["validation"]
        line = f"{m:<10}{v['accuracy']:>9.4f}{v['macro_f1']:>8.4f}"
        if has_test:
            t = r.get("test")
            line += f"{t['accuracy']:>10.4f}{t['macro_f1']:>9.4f}" if t else f"{'-':>10}{'-':>9}"
        note = "picked (best validation macro-F1)" if m == picked else ("baseline" if m == "tfidf" else "")
        if r.get("steps_run"):
            note += f"{'; ' if note else ''}{r['steps_run']} steps"
        lines.append(line + ("  " + note if note else ""))
    return "\n".join(lines)
