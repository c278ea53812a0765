"""Causal-LM (continued) pretraining, nanoGPT style: documents framed as BOS text EOS, concatenated,
cut into blocks; AdamW with warm-up and cosine decay; seeded; checkpoints in the Hugging Face layout
that every other verb reads; resumable from the last checkpoint.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..errors import GptquantError, require
from ..text import normalize_text
from ..tokenize import SpecialTokens, token_ids

# GPT-2 shapes for `--config`; vocab size comes from the tokenizer
CONFIGS = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=2, n_positions=128),
    "small": dict(n_layer=4, n_embd=256, n_head=4, n_positions=512),
    "base": dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024),  # uer/gpt2-chinese-cluecorpussmall
}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
STATE_FILE = "trainer_state.pt"


def read_corpus(path) -> list[str]:
    """Documents from a .txt (one per line), .csv/.parquet/.jsonl (a `text` column, or title+content)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise GptquantError(f"{path}: corpus file not found")
    suffix = path.suffix.lower()
    if suffix in (".txt", ".text"):
        docs = path.read_text(encoding="utf-8").splitlines()
    else:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix in (".jsonl", ".json"):
            df = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise GptquantError(f"{path}: unknown corpus format (use .txt, .csv, .jsonl or .parquet)")
        if "text" in df.columns:
            docs = df["text"].astype(str).tolist()
        elif "content" in df.columns:
            docs = (df.get("title", "").astype(str) + "\n" + df["content"].astype(str)).tolist()
        else:
            raise GptquantError(f"{path}: corpus needs a 'text' (or 'content') column; has {list(df.columns)}")
    docs = [d for d in (normalize_text(x) for x in docs) if d]
    if not docs:
        raise GptquantError(f"{path}: corpus has no non-empty documents")
    return docs


def train_wordpiece(docs: list[str], out_dir: Path, vocab_size: int = 8000) -> None:
    """A BERT-style character vocabulary written in uer's layout (vocab.txt + tokenizer_config.json).

    Chinese text is one token per character, as in bert-base-chinese; ASCII words fall back to
    characters plus '##' continuation pieces. Built by counting (tokenizers' WordPiece trainer breaks
    frequency ties differently from run to run, which would make seeded training unrepeatable).
    """
    from collections import Counter

    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    norm = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    pre = BertPreTokenizer()
    counts: Counter = Counter()
    for doc in docs:
        for word, _ in pre.pre_tokenize_str(norm.normalize_str(doc)):
            counts.update(word[:1])
            counts.update("##" + c for c in word[1:])
    for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        counts.setdefault(c, 0)
        counts.setdefault("##" + c, 0)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[: max(0, vocab_size - len(SPECIALS))]
    (out_dir / "vocab.txt").write_text("\n".join(SPECIALS + ranked) + "\n", encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": False, "tokenizer_class": "BertTokenizer", "model_max_length": 512, "unk_token": "[UNK]",
         "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}, indent=1))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}))


TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


def blocks(docs: list[str], tokenizer, policy: SpecialTokens, block: int) -> np.ndarray:
    """All documents as BOS text EOS, concatenated and cut into [n, block+1] rows (inputs + shifted targets)."""
    framed = SpecialTokens(policy.bos_id, policy.eos_id, policy.pad_id, add_bos=True, add_eos=policy.eos_id is not None)
    stream = np.fromiter((i for ids in token_ids(tokenizer, docs, framed, normalize=False) for i in ids), dtype=np.int64)
    n = (len(stream) - 1) // block
    if n < 1:
        raise GptquantError(f"corpus too small: {len(stream)} tokens for one block of {block}")
    return np.stack([stream[i * block: i * block + block + 1] for i in range(n)])


def pretrain(out, corpus, model=None, config: str = "small", steps: int | None = None, minutes: float | None = None,
             epochs: float = 1.0, block: int = 128, batch: int = 16, lr: float = 1e-3, warmup: int = 20,
             seed: int = 0, save_every: int = 100, vocab_size: int = 8000, val_fraction: float = 0.05,
             resume: bool = True, threads: int | None = None, progress: bool | None = None) -> dict:
    """Train and write an HF checkpoint to `out`; returns the training summary (also TRAINING.json)."""
    torch = require("torch", "train", "pretraining")
    transformers = require("transformers", "train", "pretraining")
    from tqdm.auto import tqdm

    from .checkpoint import detect_tokenizer, load_checkpoint, special_token_policy
    from .trainloop import load_state, optimizer_step

    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    docs = read_corpus(corpus)
    resuming = resume and (out / STATE_FILE).is_file() and (out / "config.json").is_file()
    if resuming:
        ckpt = load_checkpoint(out)
    elif model is not None:
        ckpt = load_checkpoint(model)
        for name in TOKENIZER_FILES:
            if (Path(model) / name).is_file():
                shutil.copyfile(Path(model) / name, out / name)
    else:
        if config not in CONFIGS:
            raise GptquantError(f"unknown --config {config!r}; choose from {', '.join(CONFIGS)}")
        train_wordpiece(docs, out, vocab_size)
        tok, kind = detect_tokenizer(out, {})
        pol = special_token_policy(tok, kind, {})
        cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), bos_token_id=pol.bos_id, eos_token_id=pol.eos_id,
                                      pad_token_id=pol.pad_id, tokenizer_class="BertTokenizer", **CONFIGS[config])
        cfg.save_pretrained(str(out))
        torch.manual_seed(seed)
        m = transformers.GPT2LMHeadModel(cfg)
        _save_weights(m, out)
        ckpt = load_checkpoint(out)
    net = ckpt.model
    block = min(block, int(ckpt.config.get("n_positions", block)))
    data = blocks(docs, ckpt.tokenizer, ckpt.policy, block)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_val = max(1, int(len(data) * val_fraction)) if len(data) > 20 else 0
    val, train = data[order[:n_val]], data[order[n_val:]]
    per_epoch = max(1, len(train) // batch)
    total = steps or max(1, int(math.ceil(epochs * per_epoch)))

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    step, losses = 0, []
    if resuming:
        state = load_state(out / STATE_FILE)
        opt.load_state_dict(state["optimizer"])
        step, losses = int(state["step"]), list(state.get("losses", []))
        torch.set_rng_state(state["rng"])  # dropout draws continue where they stopped
        total = int(state.get("total", total)) if steps is None else total

    def lr_at(s):
        if s < warmup:
            return lr * (s + 1) / warmup
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup)))))

    net.train()
    t0 = time.time()
    bar = tqdm(total=total, initial=step, desc="pretrain", disable=None if progress is None else not progress)
    while step < total:
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng(seed + 1 + epoch).permutation(len(train))  # order is a function of (seed, epoch)
        x = torch.from_numpy(train[perm[k * batch:(k + 1) * batch]])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = _lm_loss(net, x)
        optimizer_step(opt, loss, net.parameters())
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        out_of_time = minutes is not None and (time.time() - t0) > minutes * 60
        if step % save_every == 0 or step == total or out_of_time:
            _save_checkpoint(net, opt, out, step, total, losses)
        if out_of_time:
            break
    bar.close()
    net.eval()
    summary = {"steps": step, "total_steps": total, "block": block, "batch": batch, "lr": lr, "seed": seed,
               "tokens_seen": step * batch * block, "train_loss": float(np.mean(losses[-20:])) if losses else None,
               "corpus_docs": len(docs), "corpus_blocks": int(len(data)), "seconds": round(time.time() - t0, 1)}
    if n_val:
        with torch.no_grad():
            vl = float(np.mean([float(_lm_loss(net, torch.from_numpy(val[i:i + batch]))) for i in range(0, len(val), batch)]))
        summary.update(val_loss=vl, val_ppl=float(math.exp(vl)))
    atomic_write_text(out / "TRAINING.json", json.dumps(summary, indent=1))
    return summary


def _lm_loss(net, x):
    """Next-token cross-entropy on a [batch, block+1] slice (inputs x[:, :-1], targets x[:, 1:])."""
    import torch

    logits = net(input_ids=x[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))



def _save_weights(net, out: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in net.state_dict().items() if k != "lm_head.weight"}
    atomic_write(out / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))


def _save_checkpoint(net, opt, out: Path, step: int, total: int, losses: list) -> None:
    """Weights (safetensors) then optimizer state, each replaced atomically; a kill leaves a usable pair."""
    import torch

    from .trainloop import save_state

    _save_weights(net, out)
    net.config.save_pretrained(str(out))
    state = {"step": step, "total": total, "optimizer": opt.state_dict(), "losses": losses[-1000:],
             "rng": torch.get_rng_state()}
    save_state(out / STATE_FILE, state)
