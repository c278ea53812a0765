"""The hybrid sentiment head, numpy only: one calibrated logistic regression over hashed token n-grams (TF-IDF
weighted, L2-normalised) and the class log-probs of a GPT probe of the same pass.

Why: on short Chinese posts a 4-layer GPT alone loses to character TF-IDF; the BERT-style vocabulary splits
Chinese per character, so token-id n-grams carry what TF-IDF carries and the GPT block adds what the model
knows on top. The GPT block is stacked: a logistic probe on standardised GPT features (pooled and last hidden
state, LM statistics) gives k log-probs (cross-fitted at training, so the outer regression does not over-trust
them), weighted beside the n-grams. An optional second view of the same n-grams, NB-LR (Wang & Manning 2012:
one-vs-rest logistic regressions on n-gram presence scaled by naive-Bayes log-count ratios), is added to the
first view's class log-probs with a weight chosen on validation; it is stored folded, as [k, dim] coefficients
on presence. Aspect rows ("term：text") read the n-grams of the term-masked text and of windows around the term
instead (aspect_parts). Training (gptquant.lm.hybrid) and scoring (here) share `ngram_rows`, so both see the
same features. Weights travel in the bundle as .npy files (allow_pickle=False) hashed in the manifest, plus a
JSON spec: no pickle, no torch, no scikit-learn at scoring time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import GptquantError

KIND = "hybrid-ngram-gpt-logreg"
SPEC_FILE = "hybrid.json"
ARRAYS = ("ngram_idf", "ngram_coef", "dense_mean", "dense_scale", "probe_coef", "probe_intercept", "stack_coef",
          "intercept")
NB_ARRAYS = ("nb_coef", "nb_intercept")  # present when the spec has "nb"
# the LM statistics a hybrid head reads: the continuous ones (a rank bucket can flip between torch and ORT)
HYBRID_STATS = ("nll_mean", "nll_std", "ppl", "entropy_mean", "fast_detect")
_PRIME = 2147483647  # 2**31 - 1: keeps h * _MULT + id inside int64
_MULT = 1000003
ASPECT_MARK = -2  # the term inside an aspect input's text (token ids are >= 0)
ASPECT_SALT = 7919  # n-grams of the windows around the term hash apart from the text's own


def _hashed(arr: np.ndarray, n_max: int, salt: int) -> list[np.ndarray]:
    """Hashes of the 1..n_max-grams of one sequence; a salt keeps a second namespace apart."""
    parts = []
    for n in range(1, n_max + 1):
        m = len(arr) - n + 1
        if m <= 0:
            break
        h = np.full(m, n + salt, dtype=np.int64)
        for k in range(n):
            h = (h * _MULT + arr[k: k + m] + 1) % _PRIME
        parts.append(h)
    return parts


def aspect_parts(ids, aspect: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """For "term：text" input: (the text with every occurrence of the term replaced by one mark, the
    `window` tokens either side of each mark). Why: the label is about the term, and one sentence often
    names several; the text's own n-grams are the same for all of them, the ones beside the term are not,
    and with the term masked they carry over to terms never seen ("MARK 涨停"). Input without a term
    (no separator, or a term that does not occur again) gives (ids, [])."""
    arr = np.asarray(ids, dtype=np.int64)
    skip, sep, window = int(aspect["skip"]), int(aspect["sep"]), int(aspect["window"])
    cut = np.flatnonzero(arr[skip:] == sep)
    if not len(cut) or cut[0] == 0:
        return arr, []
    term, text = arr[skip: skip + cut[0]], arr[skip + cut[0] + 1:]
    n, pieces, at = len(term), [], 0
    if len(text) >= n:
        hits = np.flatnonzero((np.lib.stride_tricks.sliding_window_view(text, n) == term).all(1))
        for h in hits:
            if h >= at:  # occurrences do not overlap
                pieces += [text[at:h], np.array([ASPECT_MARK])]
                at = h + n
    if not pieces:
        return arr, []
    masked = np.concatenate(pieces + [text[at:]])
    marks = np.flatnonzero(masked == ASPECT_MARK)
    return masked, [masked[max(0, m - window): m + window + 1] for m in marks]


def ngram_rows(ids, n_max: int, dim: int, aspect: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hashed 1..n_max-grams of one token-id sequence: (unique buckets, counts). With `aspect` (the
    spec's settings for "term：text" input), the n-grams of the term-masked text and, in their own
    namespace, those of the windows around the term (aspect_parts)."""
    seqs = [(np.asarray(ids, dtype=np.int64), 0)]
    if aspect:
        masked, windows = aspect_parts(ids, aspect)
        seqs = [(masked, 0)] + [(w, ASPECT_SALT) for w in windows]
    parts = [h % dim for arr, salt in seqs for h in _hashed(arr, n_max, salt)]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    buckets, counts = np.unique(np.concatenate(parts), return_counts=True)
    return buckets, counts.astype(np.float64)


def ngram_values(counts: np.ndarray, idf: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Sublinear tf x idf, L2-normalised (TfidfVectorizer's sublinear_tf=True, norm='l2')."""
    v = (1.0 + np.log(counts)) * idf[buckets]
    norm = np.sqrt((v * v).sum())
    return v / norm if norm > 0 else v


def ngram_matrix(id_lists, n_max: int, dim: int, idf: np.ndarray | None = None, aspect: dict | None = None):
    """(rows, cols, values) of the n-gram block for many texts; values are raw counts when idf is None."""
    rows, cols, vals = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    for r, ids in enumerate(id_lists):
        b, c = ngram_rows(ids, n_max, dim, aspect)
        rows.append(np.full(len(b), r, dtype=np.int64))
        cols.append(b)
        vals.append(c if idf is None else ngram_values(c, idf, b))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def combine_views(main: np.ndarray, nb: np.ndarray, weight: float) -> np.ndarray:
    """The head's logits from its two views: the first view's log-probs plus the NB-LR view's, weighted."""
    return log_softmax(main) + weight * log_softmax(nb) if weight else main


class HybridHead:
    """Spec + arrays of a fitted hybrid head. `logprobs(ids, dense)` gives calibrated class log-probs."""

    def __init__(self, spec: dict, arrays: dict[str, np.ndarray]):
        self.spec, self.arrays = spec, arrays
        self.labels = list(spec["labels"])
        self.n_max, self.dim = int(spec["ngram"]["n_max"]), int(spec["ngram"]["dim"])
        self.max_tokens = int(spec["ngram"]["max_tokens"])
        self.aspect = spec["ngram"].get("aspect")
        self.dense = [(str(n), int(w)) for n, w in spec["dense"]]
        self.temperature = float(spec["temperature"])

    def dense_matrix(self, blocks: dict, n: int) -> np.ndarray:
        """The GPT features in the spec's order from named blocks (pooled, last_hidden, stats)."""
        parts = []
        for name, width in self.dense:
            x = blocks.get(name)
            if x is None:
                raise GptquantError(f"hybrid head needs the {name!r} features, which this graph does not give")
            x = np.asarray(x, dtype=np.float64).reshape(n, -1)
            if x.shape[1] != width:
                raise GptquantError(f"hybrid head: {name!r} is {x.shape[1]} wide, the head was fitted on {width}")
            parts.append(x)
        return np.hstack(parts) if parts else np.zeros((n, 0))

    def probe_logprobs(self, dense: np.ndarray) -> np.ndarray:
        a = self.arrays
        z = (np.nan_to_num(np.asarray(dense, dtype=np.float64), nan=0.0) - a["dense_mean"]) / a["dense_scale"]
        return log_softmax(z @ a["probe_coef"].T + a["probe_intercept"])

    @property
    def nb_weight(self) -> float:
        return float(self.spec["nb"]["weight"]) if self.spec.get("nb") else 0.0

    def main_logits(self, id_lists, dense: np.ndarray) -> np.ndarray:
        """The first view's logits [n, k]: TF-IDF n-grams and the GPT probe block."""
        return self._logits(id_lists, dense, nb=False)

    def logits(self, id_lists, dense: np.ndarray) -> np.ndarray:
        """Uncalibrated logits [n, k] from token id lists and the dense GPT features [n, width]."""
        return self._logits(id_lists, dense, nb=self.nb_weight > 0)

    def _logits(self, id_lists, dense, nb: bool) -> np.ndarray:
        a = self.arrays
        out = self.probe_logprobs(dense) @ a["stack_coef"].T + a["intercept"]
        extra = np.tile(a["nb_intercept"], (len(id_lists), 1)) if nb else None
        coef = a["ngram_coef"]
        for r, ids in enumerate(id_lists):
            b, c = ngram_rows(np.asarray(ids)[: self.max_tokens], self.n_max, self.dim, self.aspect)
            out[r] += coef[:, b] @ ngram_values(c, a["ngram_idf"], b)
            if nb:
                extra[r] += a["nb_coef"][:, b].sum(1)
        return combine_views(out, extra, self.nb_weight) if nb else out

    def logprobs(self, id_lists, dense: np.ndarray) -> np.ndarray:
        return log_softmax(self.logits(id_lists, dense) / self.temperature)

    def save(self, directory) -> list[str]:
        """Write hybrid.json and hybrid_<array>.npy into `directory`; returns the file names."""
        from ..atomic import atomic_write, atomic_write_text

        directory = Path(directory)
        names = []
        for key in ARRAYS + (NB_ARRAYS if self.spec.get("nb") else ()):
            name = f"hybrid_{key}.npy"
            atomic_write(directory / name, lambda tmp, k=key: _save_npy(tmp, self.arrays[k]))
            names.append(name)
        atomic_write_text(directory / SPEC_FILE, json.dumps(self.spec, ensure_ascii=False, indent=2))
        return [SPEC_FILE] + names

    @classmethod
    def load(cls, directory) -> "HybridHead":
        """Read and check a hybrid head; every problem names the file and field."""
        directory = Path(directory)
        path = directory / SPEC_FILE
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GptquantError(f"{path}: unreadable hybrid spec ({exc})") from None
        check_spec(spec, path)
        k, dim, width = len(spec["labels"]), int(spec["ngram"]["dim"]), sum(w for _, w in spec["dense"])
        shapes = {"ngram_idf": (dim,), "ngram_coef": (k, dim), "dense_mean": (width,), "dense_scale": (width,),
                  "probe_coef": (k, width), "probe_intercept": (k,), "stack_coef": (k, k), "intercept": (k,)}
        if spec.get("nb"):
            shapes.update(nb_coef=(k, dim), nb_intercept=(k,))
        arrays = {}
        for key, shape in shapes.items():
            p = directory / f"hybrid_{key}.npy"
            try:
                arr = np.load(p, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise GptquantError(f"{p}: unreadable array ({exc})") from None
            if arr.shape != shape or arr.dtype.kind != "f" or not np.isfinite(arr).all():
                raise GptquantError(f"{p}: expected finite floats of shape {shape}, got {arr.dtype} {arr.shape}")
            arrays[key] = arr.astype(np.float64)
        if (arrays["dense_scale"] <= 0).any():
            raise GptquantError(f"{directory / 'hybrid_dense_scale.npy'}: scales must be positive")
        return cls(spec, arrays)


def _save_npy(path, arr) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(arr, dtype=np.float64), allow_pickle=False)


def check_spec(spec, where) -> dict:
    """Validate hybrid.json, naming the bad field."""
    if not isinstance(spec, dict) or spec.get("kind") != KIND:
        raise GptquantError(f"{where}: not a {KIND} spec")
    labels = spec.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise GptquantError(f"{where}: 'labels' must be a list of at least two names")
    ng = spec.get("ngram")
    if not isinstance(ng, dict) or not all(isinstance(ng.get(k), int) and ng[k] > 0 for k in ("n_max", "dim", "max_tokens")):
        raise GptquantError(f"{where}: 'ngram' must hold positive integers n_max, dim, max_tokens")
    aspect = ng.get("aspect")
    if aspect is not None and not (isinstance(aspect, dict) and all(
            isinstance(aspect.get(k), int) and not isinstance(aspect.get(k), bool) and aspect[k] >= lo
            for k, lo in (("sep", 0), ("skip", 0), ("window", 1)))):
        raise GptquantError(f"{where}: 'ngram.aspect' must hold integers sep >= 0, skip >= 0, window >= 1")
    dense = spec.get("dense")
    if not isinstance(dense, list) or not all(isinstance(d, list) and len(d) == 2 and isinstance(d[0], str)
                                              and isinstance(d[1], int) and d[1] > 0 for d in dense):
        raise GptquantError(f"{where}: 'dense' must be a list of [block name, width] pairs")
    t = spec.get("temperature")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not t > 0:
        raise GptquantError(f"{where}: 'temperature' must be a positive number")
    nb = spec.get("nb")
    if nb is not None:
        w = nb.get("weight") if isinstance(nb, dict) else None
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0:
            raise GptquantError(f"{where}: 'nb' must hold a positive 'weight'")
    return spec


def hybrid_of(manifest: dict) -> bool:
    """Whether a bundle's sentiment columns come from a hybrid head (its files beside the graph)."""
    head = (manifest.get("heads") or {}).get("sentiment")
    return isinstance(head, dict) and head.get("method") == "hybrid"
