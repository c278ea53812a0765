"""The training loop pieces shared by pretraining and the sentiment heads: one optimiser step, resumable
state written atomically (read back with weights_only), and the sentiment heads' early-stopping loop."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..tokenize import pad_batch
from . import metrics as M
from .heads import head_logits, own_state, torch


def optimizer_step(opt, loss, params, clip: float = 1.0) -> None:
    """Backward, clip the gradient norm, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def save_state(path: Path, state: dict) -> None:
    """Training state (tensors, numbers, strings) replaced atomically: a kill leaves the previous one."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def batch_indices(step: int, batch: int, n: int, seed: int) -> np.ndarray:
    """Rows of step `step` in a stream of per-epoch permutations: deterministic, so a resumed run
    sees exactly the batches it would have seen."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, pos = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[pos: pos + batch - len(out)].tolist())
    return np.array(out)


def fit_loop(head, params, train_ids, y_train, val_ids, y_val, labels, *, steps, batch, lr, eval_every, patience,
             seed, pad_id, state_path: Path, resume: bool, progress: bool, train_mode_modules=(),
             budget_s: float | None = None) -> dict:
    """AdamW on `params`; validation loss and macro-F1 every `eval_every` steps; stops early only after
    `patience` evaluations in which neither improved (never while validation loss still falls); the
    weights with the best validation macro-F1 are restored. State is saved at each evaluation.
    `budget_s`: after BUDGET_PROBE steps of a fresh run, raise OverBudget when the measured speed
    projects the whole run past it."""
    import time

    from tqdm.auto import tqdm

    from .auto import BUDGET_PROBE, OverBudget

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)))
    step, best, bad, best_state, history, best_loss = 0, -1.0, 0, None, [], float("inf")
    if resume and state_path.is_file():
        st = load_state(state_path)
        head.load_state_dict(st["head"], strict=False)
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step, best, bad, best_state = int(st["step"]), float(st["best"]), int(st["bad"]), st["best_state"]
        history = json.loads(st["history"])
        best_loss = min([h["val_loss"] for h in history if "val_loss" in h], default=best_loss)
    yt = torch.from_numpy(np.asarray(y_train))
    bar = tqdm(total=steps, initial=step, disable=not progress or None, desc="train")
    stopped = False
    first, t0 = step, time.perf_counter()
    while step < steps and not stopped:
        head.train()
        for mod in train_mode_modules:
            mod.eval()  # the frozen LM keeps dropout off
        idx = batch_indices(step, batch, len(train_ids), seed)
        x, m, _ = pad_batch([train_ids[i] for i in idx], 10**9, pad_id)
        loss = torch.nn.functional.cross_entropy(head.logits(torch.from_numpy(x), torch.from_numpy(m)), yt[idx])
        optimizer_step(opt, loss, params)
        sched.step()
        step += 1
        bar.update(1)
        if budget_s and first == 0 and step == BUDGET_PROBE:
            projected = (time.perf_counter() - t0) / step * steps * 1.1  # + evaluations
            if projected > budget_s:
                bar.close()
                raise OverBudget(f"{steps} steps projected at {projected / 60:.0f} min > budget {budget_s / 60:.0f} min")
        if step % eval_every == 0 or step == steps:
            val_logits = head_logits(head, val_ids, pad_id)
            score = M.classification_report(y_val, val_logits, labels)["macro_f1"]
            val_loss = M.nll(val_logits, y_val)
            history.append({"step": step, "loss": loss.item(), "val_loss": val_loss, "val_macro_f1": score})
            bar.set_postfix(loss=f"{loss.item():.3f}", val_loss=f"{val_loss:.3f}", val_f1=f"{score:.3f}")
            improved = score > best or val_loss < best_loss
            best_loss = min(best_loss, val_loss)
            if score > best:
                best, best_state = score, own_state(head)
            bad = 0 if improved else bad + 1
            stopped = bad >= patience
            save_state(state_path, {"head": own_state(head), "opt": opt.state_dict(), "sched": sched.state_dict(),
                                    "step": step, "best": best, "bad": bad, "best_state": best_state,
                                    "history": json.dumps(history)})
    bar.close()
    if best_state is not None:
        head.load_state_dict(best_state, strict=False)
    return {"steps_run": step, "best_val_macro_f1": best, "early_stopped": stopped, "history": history}
