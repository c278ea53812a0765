"""Batched scoring with one onnxruntime session: texts -> per-article features.

The graph returns per-token statistics (log p of the actual token, entropy, Var log p, rank) and
pooled states; everything per article is reduced here with numpy. Texts are sorted by token length
before batching so a batch pads little, and results are put back in input order.

A sentiment-only bundle (manifest "graph": "sentiment-only") has no per-token outputs: its rows hold
n_tokens, truncated and the sentiment columns only; the LM-statistic columns (nll_mean, ppl, ...) are
absent, not NaN, and ai_score is present only when the detector reads nothing the graph lacks.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import bundle as B
from ..errors import GptquantError
from ..paths import cache_dir
from ..tokenize import SpecialTokens, pad_batch, token_ids
from .columns import feature_columns, label_columns, length_statistics, sentiment_statistics, token_statistics
from .heads import check_detector, detector_score, detector_usable, needs_pooled
from .hybrid import HYBRID_STATS, HybridHead, hybrid_of

GRAPHS = ("full", "sentiment-only")
THREADS_ENV = "GPTQUANT_THREADS"


def check_manifest(manifest: dict, where) -> SpecialTokens:
    """The special-token policy the runtime needs, with a clear error for each missing or bad key."""
    tok = manifest.get("tokenizer")
    if not isinstance(tok, dict):
        raise B.BundleError(f"{where}: manifest has no 'tokenizer' section")
    for key in ("add_bos", "add_eos"):
        if not isinstance(tok.get(key), bool):
            raise B.BundleError(f"{where}: manifest tokenizer.{key} must be true or false, got {tok.get(key)!r}")
    needed = ["pad_id"] + (["bos_id"] if tok["add_bos"] else []) + (["eos_id"] if tok["add_eos"] else [])
    for key in needed:
        value = tok.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise B.BundleError(f"{where}: manifest tokenizer.{key} must be a non-negative int, got {value!r}")
    max_length = manifest.get("max_length")
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise B.BundleError(f"{where}: manifest max_length must be an int >= 2, got {max_length!r}")
    labels = manifest.get("labels")
    if labels is not None and (not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels)):
        raise B.BundleError(f"{where}: manifest labels must be a non-empty list of names, got {labels!r}")
    return SpecialTokens.from_dict(tok)


class Scorer:
    """A verified bundle and one ORT session. `score(texts)` gives one feature row per text, in order."""

    def __init__(self, bundle_dir, threads: int | None = None, batch_size: int = 32, verify: bool = True,
                 providers: list[str] | None = None, batch_tokens: int = 512, spin: bool = False):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.bundle_dir = Path(bundle_dir)
        if not self.bundle_dir.is_dir():
            raise B.BundleError(f"{self.bundle_dir}: bundle directory not found")
        self.manifest = B.verify_bundle(self.bundle_dir) if verify else B.read_manifest(self.bundle_dir)
        self.bundle_hash = B.bundle_hash(self.manifest)
        self.policy = check_manifest(self.manifest, self.bundle_dir)
        self.pad_id = self.policy.pad_id
        self.max_length = int(self.manifest["max_length"])
        self.labels = self.manifest.get("labels") or None
        if not isinstance(batch_size, int) or batch_size < 1:
            raise GptquantError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        if not isinstance(batch_tokens, int) or batch_tokens < 1:
            raise GptquantError(f"batch_tokens must be a positive integer, got {batch_tokens!r}")
        self.batch_tokens = batch_tokens
        self.threads = resolve_threads(threads)
        # int8 graphs quantise activations with one scale per tensor (onnxruntime's DynamicQuantizeLinear) over
        # the whole padded batch, so a text's features moved with its neighbours and its padding (up to 0.011
        # nll_mean and 0.03 fast_detect on gpt2-zh-fin-mini); each text runs alone instead, at the same speed
        # (single thread: 2,467 vs 2,641 tok/s on the mini model, 743 vs 651 on uer-size 12x768)
        self.alone = self.manifest.get("precision") == "int8"

        try:
            self.tokenizer = Tokenizer.from_file(str(self.bundle_dir / B.TOKENIZER_FILE))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise B.BundleError(f"{self.bundle_dir / B.TOKENIZER_FILE}: unreadable tokenizer ({exc})") from None
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        # onnxruntime's idle intra-op threads busy-wait by default; on cores shared with other work (other agents,
        # pool workers, Ray) a spinning thread holds a core its sibling needs: 2 threads under load average ~10 gave
        # 366-626 tok/s spinning vs 943-1765 not (12x768 int8, tokens/CPU-second 1,018-1,086 vs 1,701-1,960).
        # spin=True restores it for a machine that does nothing else.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(self.bundle_dir / B.MODEL_FILE), opts,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for a bad graph
            raise B.BundleError(f"{self.bundle_dir / B.MODEL_FILE}: onnxruntime cannot load the model ({exc})") from None
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.graph = self.manifest.get("graph", "full")
        if self.graph not in GRAPHS:
            raise B.BundleError(f"{self.bundle_dir}: manifest graph must be one of {', '.join(GRAPHS)}, got {self.graph!r}")
        self.has_token_outputs = self.graph == "full"
        if not self.has_token_outputs and not self.labels:
            raise B.BundleError(f"{self.bundle_dir}: a sentiment-only bundle needs manifest labels")
        self.hybrid = HybridHead.load(self.bundle_dir) if hybrid_of(self.manifest) else None
        if self.hybrid is not None and (not self.has_token_outputs or self.hybrid.labels != self.labels):
            raise B.BundleError(f"{self.bundle_dir}: a hybrid sentiment head needs a full graph and the manifest's labels")
        need = (list(B.TOKEN_OUTPUTS) if self.has_token_outputs else [])
        if self.hybrid is not None:
            need += list(B.POOLED_OUTPUTS)
        elif self.labels:
            need.append(B.SENTIMENT_OUTPUT)
        missing = [n for n in need if n not in outputs]
        if missing:
            raise B.BundleError(f"{self.bundle_dir / B.MODEL_FILE}: graph lacks output(s) {', '.join(missing)}")
        inputs = {i.name for i in self.session.get_inputs()}
        if inputs != set(B.INPUTS):
            raise B.BundleError(f"{self.bundle_dir / B.MODEL_FILE}: graph inputs are {sorted(inputs)}, expected {list(B.INPUTS)}")
        self.has_pooled = "pooled" in outputs
        self.feature_columns = feature_columns(self.has_token_outputs, self.labels)
        self.detector = self._open_detector(outputs)
        self._outputs = need + (["pooled"] if needs_pooled(self.detector) and "pooled" not in need else [])
        self.tokens_scored = 0  # running total, for throughput reports
        self.seconds = 0.0

    def _open_detector(self, outputs) -> dict | None:
        """The manifest's detector, checked against this graph's hidden size; None when there is none, or
        (sentiment-only graphs) when it reads statistics the graph does not compute."""
        det = (self.manifest.get("heads") or {}).get("detector")
        if not det:
            return None
        width = outputs["pooled"].shape[-1] if self.has_pooled else None
        hidden = width if isinstance(width, int) else self.manifest.get("hidden_size")
        det = check_detector(det, f"{self.bundle_dir / B.MANIFEST}: heads.detector",
                             hidden_size=hidden if isinstance(hidden, int) else None)
        if detector_usable(det, self.feature_columns, self.has_pooled):
            return det
        if self.has_token_outputs:
            raise B.BundleError(f"{self.bundle_dir}: heads.detector needs the pooled hidden state, which the graph lacks")
        return None

    # ---- public API -------------------------------------------------------------------------------

    def score(self, texts) -> pd.DataFrame:
        """One row of features per text, in input order (a Series keeps its index)."""
        index = texts.index if isinstance(texts, pd.Series) else None
        texts = list(texts)
        frames = list(self.score_batches(texts, chunk_size=max(len(texts), 1)))
        out = frames[0] if frames else self._empty()
        out = out.reset_index(drop=True)
        if index is not None:
            out.index = index
        return out

    def score_batches(self, texts, chunk_size: int | None = None, with_pooled: bool = False):
        """Generator: score an iterable of texts chunk by chunk (default 8 batches), yielding a DataFrame
        per chunk whose index is each text's position in the whole stream. Memory stays bounded.
        with_pooled=True yields (DataFrame, pooled states [n, hidden]) pairs instead (same single pass)."""
        chunk_size = chunk_size or self.batch_size * 8
        if with_pooled and not self.has_pooled:
            raise B.BundleError(f"{self.bundle_dir / B.MODEL_FILE}: graph has no 'pooled' output")
        outputs = self._outputs + (["pooled"] if with_pooled and "pooled" not in self._outputs else [])
        ncol = len(self.feature_columns)
        it = iter(texts)
        start = 0
        while chunk := list(itertools.islice(it, chunk_size)):
            ids, truncated = self.encode(chunk, first_index=start)
            rows = self._run(ids, outputs, self._reduce)
            df = pd.DataFrame(rows[:, :ncol], columns=self.feature_columns)
            df["n_tokens"] = df["n_tokens"].astype("int64")
            df["truncated"] = truncated
            pooled = rows[:, ncol:ncol + self._hidden(rows, ncol, outputs)] if "pooled" in outputs else None
            if self.hybrid is not None:
                self._add_hybrid(df, ids, pooled, rows[:, ncol + pooled.shape[1]:])
            df = self._add_heads(df, pooled)
            df.index = pd.RangeIndex(start, start + len(chunk))
            yield (df, pooled) if with_pooled else df
            start += len(chunk)

    def _hidden(self, rows, ncol, outputs) -> int:
        """Width of the pooled block among the extra columns (pooled, then last_hidden for a hybrid head)."""
        extra = rows.shape[1] - ncol
        return extra // 2 if "last_hidden" in outputs else extra

    def _add_hybrid(self, df: pd.DataFrame, ids, pooled, last_hidden) -> None:
        """sent_* and sentiment from the hybrid head: token n-grams + the same pass's GPT features."""
        if not len(df):
            return
        blocks = {"stats": df[list(HYBRID_STATS)].to_numpy(dtype=np.float64), "pooled": pooled, "last_hidden": last_hidden}
        probs = np.exp(self.hybrid.logprobs(ids, self.hybrid.dense_matrix(blocks, len(df))))
        names = label_columns(self.labels)
        for j, name in enumerate(names):
            df[name] = probs[:, j]
        if "sentiment" in df.columns:
            df["sentiment"] = df["sent_pos"] - df["sent_neg"]

    def _add_heads(self, df: pd.DataFrame, pooled) -> pd.DataFrame:
        """Manifest-borne heads: the detector's ai_score."""
        if self.detector is None:
            return df
        df = df.copy()
        df["ai_score"] = detector_score(df, self.detector, pooled) if len(df) else pd.Series(dtype="float64")
        return df

    def embed(self, texts) -> np.ndarray:
        """Pooled final hidden states [n, hidden] (masked mean), in input order."""
        if not self.has_pooled:
            raise B.BundleError(f"{self.bundle_dir / B.MODEL_FILE}: graph has no 'pooled' output")
        ids, _ = self.encode(list(texts))
        return np.asarray(self._run(ids, ["pooled"], lambda out, mask: out["pooled"].astype(np.float32)), dtype=np.float32)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_scored / self.seconds if self.seconds else float("nan")

    # ---- tokenisation -----------------------------------------------------------------------------

    def encode(self, texts: list, first_index: int = 0) -> tuple[list[list[int]], np.ndarray]:
        """Token ids framed by the bundle's special-token policy (gptquant.tokenize, the encoder the
        exporter's parity check used), cut to max_length; and a truncated flag per text."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise GptquantError(f"text #{first_index + i} is {type(t).__name__}, not a string")
        ids = token_ids(self.tokenizer, texts, self.policy)
        truncated = np.array([len(s) > self.max_length for s in ids], dtype=bool)
        return [s[: self.max_length] for s in ids], truncated

    # ---- inference ----------------------------------------------------------------------------------

    def _run(self, ids: list[list[int]], outputs: list[str], reduce) -> np.ndarray:
        """Length-sorted batches through the session; `reduce(outputs, mask)` gives rows put back in order."""
        lengths = [len(s) for s in ids]
        order = np.argsort(lengths, kind="stable")
        rows: list = [None] * len(ids)
        t0 = time.perf_counter()
        for idx in self._batches(lengths, order):
            input_ids, mask, _ = pad_batch([ids[i] for i in idx], self.max_length, self.pad_id)
            result = dict(zip(outputs, self.session.run(outputs, {"input_ids": input_ids, "attention_mask": mask})))
            for r, row in zip(idx, reduce(result, mask)):
                rows[r] = row
            self.tokens_scored += int(mask[:, 1:].sum())
        self.seconds += time.perf_counter() - t0
        return np.stack(rows) if rows else np.zeros((0, len(self.feature_columns)))  # callers split off extras

    def _batches(self, lengths: list[int], order: np.ndarray):
        """Length-sorted batches of at most batch_size texts and batch_tokens padded tokens (int8: one text
        each, unpadded, see `alone`). The graph's per-token log-softmax over the vocabulary makes memory
        scale with batch x longest text: on the 4x256 fixture 512 tokens per batch scored as fast as 4,096 and a fresh session's first batch took
        0.42 s instead of 0.78 s (less memory to fault in)."""
        budget = self.batch_tokens
        b = 0
        while b < len(order):
            e = b + 1
            while not self.alone and e < len(order) and e - b < self.batch_size and \
                    (e - b + 1) * lengths[order[e]] <= budget:
                e += 1
            yield order[b:e]
            b = e

    def _reduce(self, out: dict, mask: np.ndarray) -> np.ndarray:
        """Per-article features from one batch's outputs (float64, NaN where undefined) in feature_columns
        order, followed by the pooled state when it was requested."""
        m = mask[:, 1:].astype(bool)
        stats = token_statistics(out, m) if self.has_token_outputs else length_statistics(m)
        if self.hybrid is not None:  # filled by _add_hybrid
            stats.update({c: np.full(len(m), np.nan) for c in self.feature_columns if c not in stats})
        elif self.labels:
            stats.update(sentiment_statistics(self.labels, out[B.SENTIMENT_OUTPUT]))
        rows = np.stack([stats[c] for c in self.feature_columns], axis=1)
        if "pooled" in out:
            rows = np.hstack([rows, out["pooled"].astype(np.float64)])
        if self.hybrid is not None:
            rows = np.hstack([rows, out["last_hidden"].astype(np.float64)])
        return rows

    def _empty(self) -> pd.DataFrame:
        df = pd.DataFrame({c: pd.Series(dtype="float64") for c in self.feature_columns})
        df["n_tokens"] = df["n_tokens"].astype("int64")
        df["truncated"] = df["truncated"].astype(bool)
        return self._add_heads(df, None)


def resolve_threads(threads) -> int | None:
    """Thread count: the argument, else $GPTQUANT_THREADS, else None (onnxruntime's default)."""
    source = "threads"
    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if not env:
            return None
        threads, source = env, THREADS_ENV
    try:
        value = int(threads)
    except (TypeError, ValueError):
        value = -1
    if value < 0 or (isinstance(threads, float) and threads != value):
        raise GptquantError(f"{source} must be a non-negative integer (0 = onnxruntime default), got {threads!r}")
    return value or None


# ---- loading a model -----------------------------------------------------------------------------

def load_model(path, **kw) -> Scorer:
    """A bundle directory -> Scorer; a Hugging Face GPT-2 checkpoint directory -> a Scorer on its bundle in
    the cache once it has been exported (by gptquant.load_model, which needs the train extra). Keyword
    arguments go to Scorer."""
    path = Path(path)
    if (path / B.MANIFEST).is_file():
        return Scorer(path, **kw)
    target = cached_bundle(path)
    if not target.is_dir():
        raise GptquantError(f"{path}: a checkpoint not yet exported into the bundle cache ({target.parent}); "
                            "export it with gptquant.load_model(path) (needs gptquant[train]) or "
                            "`gptquant export`, and score the bundle")
    return Scorer(target, **kw)


def cached_bundle(model_dir) -> Path:
    """Where the bundle exported from a checkpoint directory lives in the cache (it may not exist yet)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise GptquantError(f"{model_dir}: neither a gptquant bundle (manifest.json) nor a checkpoint (config.json)")
    return cache_root() / checkpoint_hash(model_dir)


def cache_root() -> Path:
    return cache_dir() / "bundles"


def checkpoint_hash(model_dir: Path) -> str:
    """Hash of every regular file in the checkpoint (weights, config, vocabulary): same files, same bundle."""
    h = hashlib.sha256()
    for p in sorted(model_dir.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            h.update(p.name.encode() + b"\0" + B.sha256_file(p).encode() + b"\n")
    return h.hexdigest()[:24]
