"""Turn texts into GPT-2 inputs under a bundle's special-token policy: the one encoder that export,
parity checks and the runtime share, so the model sees identical ids at training and at scoring.

Only tokenizers + numpy: safe for the torch-free runtime.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .text import normalize_text


@dataclass(frozen=True)
class SpecialTokens:
    """Which special tokens frame a text. uer-style Chinese GPT-2s were trained as [CLS] text [SEP]:
    [CLS] is the BOS every text starts with; [SEP] only ends a document and must never be put before
    a prediction (the seed's argmax-after-[SEP] bug)."""

    bos_id: int | None
    eos_id: int | None
    pad_id: int
    add_bos: bool = True
    add_eos: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpecialTokens":
        return cls(**{k: d.get(k) for k in ("bos_id", "eos_id", "pad_id", "add_bos", "add_eos")})


def token_ids(tokenizer, texts, policy: SpecialTokens, normalize: bool = True) -> list[list[int]]:
    """Ids of each text framed by the policy, untruncated. `tokenizer` is a tokenizers.Tokenizer."""
    texts = [normalize_text(t) for t in texts] if normalize else list(texts)
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    head = [policy.bos_id] if policy.add_bos and policy.bos_id is not None else []
    tail = [policy.eos_id] if policy.add_eos and policy.eos_id is not None else []
    return [head + e.ids + tail for e in encs]


def pad_batch(seqs: list[list[int]], max_length: int, pad_id: int):
    """Right-pad (and truncate to max_length) -> (input_ids int64, attention_mask int64, truncated bool).

    At least 2 columns, so the per-token outputs (which score positions 1..seq-1) are never empty."""
    width = max(2, min(max_length, max(len(s) for s in seqs)))
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    truncated = np.zeros(len(seqs), dtype=bool)
    for i, s in enumerate(seqs):
        n = min(len(s), width)
        ids[i, :n] = s[:n]
        mask[i, :n] = 1
        truncated[i] = len(s) > max_length
    return ids, mask, truncated


def encode(tokenizer, texts, policy: SpecialTokens, max_length: int):
    """texts -> (input_ids, attention_mask, truncated) ready for the ONNX graph or torch."""
    return pad_batch(token_ids(tokenizer, texts, policy), max_length, policy.pad_id)
