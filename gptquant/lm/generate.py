"""Next-token prediction and sampled continuations, done right: predict after the last text token,
never after [SEP] (the seed article's argmax-after-[SEP] bug), and never feed token_type_ids."""
from __future__ import annotations

import re

from ..errors import GptquantError
from ..tokenize import token_ids
from .checkpoint import Checkpoint

_ASCII_WORD = re.compile(r"[A-Za-z]")


def decode(ckpt: Checkpoint, ids) -> str:
    """Ids -> text. BERT WordPiece decoding would put a space between every token ("1. 9 %"); Chinese
    text has none, so we join tokens and keep a space only between two ASCII words."""
    if ckpt.tokenizer_kind != "wordpiece":
        return ckpt.tokenizer.decode(list(ids), skip_special_tokens=True)
    out = ""
    for i in ids:
        tok = ckpt.tokenizer.id_to_token(int(i))
        if tok is None or (tok.startswith("[") and tok.endswith("]")):
            continue
        if tok.startswith("##"):
            out += tok[2:]
        else:
            out += (" " if out and _ASCII_WORD.match(out[-1]) and _ASCII_WORD.match(tok[0]) else "") + tok
    return out


def prompt_ids(ckpt: Checkpoint, text: str) -> list[int]:
    ids = token_ids(ckpt.tokenizer, [text], ckpt.policy)[0]
    if ckpt.policy.add_eos and ids and ids[-1] == ckpt.policy.eos_id:
        ids = ids[:-1]  # a prediction continues the text; it never follows the end-of-document token
    if not ids:
        raise GptquantError("empty prompt")
    return ids


def next_token(ckpt: Checkpoint, text: str, k: int = 5) -> list[tuple[str, float]]:
    """The k most likely next tokens after the text's last token, with probabilities."""
    import torch

    ids = prompt_ids(ckpt, text)
    with torch.no_grad():
        logits = ckpt.model(input_ids=torch.tensor([ids])).logits[0, -1]
    probs = torch.softmax(logits, -1)
    top = torch.topk(probs, k)
    return [(decode(ckpt, [int(i)]) or ckpt.tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(top.values, top.indices)]


def sample(ckpt: Checkpoint, text: str, max_new_tokens: int = 40, top_k: int = 50, top_p: float = 0.95,
           temperature: float = 1.0, seed: int = 0) -> str:
    """A seeded top-k / top-p continuation of the text (the continuation only)."""
    import torch

    if temperature <= 0:
        raise GptquantError("temperature must be > 0")
    ids = prompt_ids(ckpt, text)
    n_pos = int(ckpt.config.get("n_positions", 1024))
    gen = torch.Generator().manual_seed(seed)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):  # full recompute per step: short outputs, no cache API churn
            if len(ids) + len(new) >= n_pos:
                break
            logits = ckpt.model(input_ids=torch.tensor([ids + new]), use_cache=False).logits[0, -1] / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, -1)
            if top_p < 1.0:
                sp, si = torch.sort(probs, descending=True)
                drop = sp.cumsum(-1) - sp > top_p
                sp[drop] = 0
                probs = torch.zeros_like(probs).scatter(0, si, sp)
                probs = probs / probs.sum()
            nxt = int(torch.multinomial(probs, 1, generator=gen))
            if nxt == ckpt.policy.eos_id:
                break
            new.append(nxt)
    return decode(ckpt, new)
