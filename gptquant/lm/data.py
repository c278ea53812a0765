"""Labelled tables for training: reading a table, the label order, train/validation splits and K-shot
samples. The label order matters downstream: the runtime's sent_neg/neu/pos columns go by position."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import GptquantError

TEXT_COLUMNS = ("text", "sentence", "content")
TERM_SEP = "："  # aspect rows are "term：text" (a full-width colon, which normalisation keeps)
# label sets whose order (negative, neutral, positive) we know; the runtime maps 3 labels by position
KNOWN_ORDERS = (("negative", "neutral", "positive"), ("neg", "neu", "pos"), ("利空", "中性", "利好"),
                ("消极", "中性", "积极"), ("负面", "中性", "正面"), ("down", "flat", "up"), ("0", "1", "2"),
                ("-1", "0", "1"), ("negative", "positive"), ("0", "1"))


def read_table(source) -> tuple[str, pd.DataFrame]:
    """(name for messages, frame) from a DataFrame or a .csv (UTF-8, else GB18030), .parquet or .json(l) file."""
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
        from io import StringIO

        from ..encoding import read_text  # UTF-8 or GB18030 decided per line, as for news and prices

        return str(path), pd.read_csv(StringIO(read_text(path)), dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise GptquantError(f"{path}: unreadable table ({exc})") from None


def _column(name: str, df: pd.DataFrame, given, candidates, what: str) -> str:
    """The column `given`, else the first of `candidates` present; an error naming what was found."""
    col = given or next((c for c in candidates if c in df.columns), None)
    if col not in df.columns:
        raise GptquantError(f"{name}: no {what} column (expected {what!r} or pass --{what}-column), "
                            f"found {list(df.columns)}")
    return col


def read_texts(source, text_column=None, limit=None, seed: int = 0) -> list[str]:
    """Texts of a table (an empty text is an error naming the row); `limit` samples rows, seeded."""
    name, df = read_table(source)
    col = _column(name, df, text_column, TEXT_COLUMNS, "text")
    for i, t in enumerate(df[col], start=1):
        if not isinstance(t, str) or not t.strip():
            raise GptquantError(f"{name}: row {i}: empty or missing {col!r}")
    texts = df[col].tolist()
    if limit and len(texts) > limit:
        keep = np.sort(np.random.default_rng(seed).permutation(len(texts))[:limit])
        texts = [texts[i] for i in keep]
    return texts


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


def is_aspect_input(texts, min_share: float = 0.95) -> bool:
    """Whether rows are aspect input, "term：text" with the term found again in the text (what a term
    column makes): true when at least `min_share` of them are."""
    def aspect(t: str) -> bool:
        term, sep, rest = t.partition(TERM_SEP)
        return bool(sep and term and term in rest)

    texts = list(texts)
    return bool(texts) and sum(map(aspect, texts)) >= min_share * len(texts)


def read_labelled(source, text_column=None, label_column=None, term_column=None, labels=None, with_groups=False):
    """(texts, label ids, label names) from a table with a text and a label column. Aspect data: a term
    column makes the input "term：text". A row without text or label is an error naming the row.
    `with_groups`: a fourth item, each row's text without its term (rows about one sentence share it)."""
    name, df = read_table(source)
    text_column = _column(name, df, text_column, TEXT_COLUMNS, "text")
    label_column = _column(name, df, label_column, ("label_name", "label"), "label")
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
    groups = texts
    if term_column is not None:
        texts = [f"{term}{TERM_SEP}{t}" for term, t in zip(df[term_column].astype(str), texts)]
    labels = order_labels(raw, labels)
    if len(labels) < 2:
        raise GptquantError(f"{name}: need at least 2 labels, found {labels}")
    index = {lab: k for k, lab in enumerate(labels)}
    out = texts, np.array([index[x] for x in raw], dtype=np.int64), labels
    return out + (groups,) if with_groups else out


def split(y, valid_frac: float, seed: int, groups=None):
    """Stratified (train, validation) row indices. Rows that share a group (aspect rows of one sentence,
    repeated texts) stay on one side: a validation row whose text was trained on overstates the score
    and steers every setting chosen on it towards memorising."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 else None
    if groups is None or len(set(groups)) == len(groups):
        return train_test_split(idx, test_size=valid_frac, random_state=seed, stratify=strat)
    codes = pd.factorize(pd.Series(list(groups)))[0]
    k = max(2, min(round(1 / valid_frac), len(set(codes))))
    tr, va = next(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, y, codes))
    return tr, va


def sample_shots(y, k: int, seed: int, exclude=()) -> np.ndarray:
    """K rows per class (all of a class when it has fewer), seeded."""
    rng = np.random.default_rng(seed)
    skip = set(int(i) for i in exclude)
    out = []
    for c in np.unique(y):
        pool = np.array([i for i in np.flatnonzero(y == c) if i not in skip])
        out.extend(rng.permutation(pool)[:k].tolist())
    return np.array(sorted(out), dtype=np.int64)
