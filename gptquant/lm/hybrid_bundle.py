"""What export needs of a checkpoint's hybrid head: its probabilities from export's feature dicts (for
the parity gate) and its files copied into the bundle. Apart from lm.hybrid, which imports export."""
from __future__ import annotations

import numpy as np

from ..runtime.hybrid import HybridHead


def feature_probs(feats: dict, head: HybridHead) -> np.ndarray:
    """The hybrid head's probabilities from one export feature dict (ids, mask, the graph's outputs): the
    runtime's reduction on torch's or onnxruntime's outputs, for the int8 parity gate."""
    from ..runtime.columns import token_statistics
    from ..runtime.hybrid import HYBRID_STATS

    mask = feats["mask"]
    st = token_statistics(feats, mask[:, 1:].astype(bool))
    stats = np.stack([st[c] for c in HYBRID_STATS], 1)
    ids = [row[: int(m.sum())] for row, m in zip(feats["ids"], mask)]
    blocks = {"stats": stats, "pooled": feats["pooled"], "last_hidden": feats["last_hidden"]}
    return np.exp(head.logprobs(ids, head.dense_matrix(blocks, len(ids))))


def bundle_files(model_dir, tmp) -> list[str]:
    """Copy a checkpoint's hybrid files into a bundle being written; their sha256 go in the manifest."""
    return HybridHead.load(model_dir).save(tmp)
