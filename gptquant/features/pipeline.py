"""The one scoring pipeline: article parts -> score cache -> engine -> feature rows, for `gptquant score`,
the nightly and Python users (`score_articles`).

`score_parts` is a generator over parts `(start, DataFrame[article_id, text])`. With a cache, a part's texts
the cache knows are filled from it and only the misses (each distinct text once) go to the engine; the
new rows go into the cache as soon as their part comes back, so a killed run keeps every finished part.
The engine is any `run(parts)` of gptquant.runtime.engines (this process, a local process pool, Ray); a
part whose texts are all cached goes through it empty, so parts stay in one stream whatever the engine.
With `parts_dir`, every finished part is also written there atomically and a part already there is
skipped: a rerun after a crash resumes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from ..errors import GptquantError
from .cache import text_key

PART_SIZE = 1024  # articles per part


@dataclass
class Counts:
    """What a pipeline run did: articles seen, texts sent to the engine, rows from the cache and from part files."""

    articles: int = 0
    scored: int = 0
    cached: int = 0  # rows not sent to the engine: cache hits and repeats of a text in the same part
    resumed: int = 0
    dtypes: dict = field(default_factory=dict)  # the engine's column types, for rows that came from the cache


def part_name(start: int) -> str:
    return f"part-{start:09d}.parquet"


def make_parts(articles: pd.DataFrame, part_size: int, first: int = 0):
    """(start, rows) slices of an (article_id, text) table; start counts articles from `first`."""
    frame = articles[["article_id", "text"]]
    return [(first + s, frame.iloc[s: s + part_size]) for s in range(0, len(frame), part_size)]


def score_parts(parts, run, *, cache=None, bundle_hash: str | None = None, parts_dir=None, counts: Counts | None = None):
    """(start, features with article_id) for every part not already in `parts_dir`, as parts finish."""
    counts = counts if counts is not None else Counts()
    pending: dict = {}

    def todo():
        for start, part in parts:
            counts.articles += len(part)
            if parts_dir is not None and (Path(parts_dir) / part_name(start)).is_file():
                counts.resumed += len(part)  # finished by an earlier, interrupted run
                continue
            if cache is None:
                pending[start] = None
                counts.scored += len(part)
                yield start, part
                continue
            keys = [_key(t, start + i) for i, t in enumerate(part["text"].tolist())]
            hits = cache.get_many(bundle_hash, keys)
            first = {}
            for i, k in enumerate(keys):
                if k not in hits:
                    first.setdefault(k, i)
            misses = part.iloc[list(first.values())]
            pending[start] = (part["article_id"].to_numpy(), keys, hits, list(first))
            counts.scored += len(misses)
            counts.cached += len(part) - len(misses)
            yield start, misses

    for start, feats in run(todo()):
        entry = pending.pop(start)
        feats = feats if entry is None else _fill(feats, entry, cache, bundle_hash, counts)
        if parts_dir is not None:
            atomic_write(Path(parts_dir) / part_name(start), lambda tmp: feats.to_parquet(tmp, index=False))
        yield start, feats


def _key(text, row: int) -> str:
    if not isinstance(text, str):
        raise GptquantError(f"text #{row}: expected a string, got {type(text).__name__}")
    return text_key(text)


def _fill(feats: pd.DataFrame, entry, cache, bundle_hash: str, counts: Counts) -> pd.DataFrame:
    """A part's rows: the engine's for its misses (stored in the cache now), the cache's for the rest."""
    ids, keys, hits, miss_keys = entry
    extra = [c for c in ("article_id", "text") if c in feats.columns]
    new = feats.drop(columns=extra) if extra else feats
    if len(new) != len(miss_keys):
        raise GptquantError(f"the engine returned {len(new)} rows for {len(miss_keys)} texts")
    if len(new):
        cache.put_many(bundle_hash, miss_keys, new)
        hits.update(zip(miss_keys, new.to_dict("records")))
        counts.dtypes = counts.dtypes or new.dtypes.to_dict()
    columns = list(new.columns) or None
    out = pd.DataFrame.from_records([hits[k] for k in keys], columns=columns)
    if columns and not out.dtypes.equals(new.dtypes):  # keep the engine's dtypes for cached rows too (ints, bools)
        out = out.astype(new.dtypes.to_dict(), errors="ignore")
    out.insert(0, "article_id", ids)
    return out


def score_articles(articles: pd.DataFrame, model=None, *, scorer=None, engine: str = "local", workers: int = 1,
                   threads: int | None = None, batch_size: int = 32, batch_tokens: int = 512, part_size: int = PART_SIZE,
                   address: str | None = None, cache=None, bundle_hash: str | None = None,
                   counts: Counts | None = None, progress: bool = False) -> pd.DataFrame:
    """Features for `articles` (columns article_id, text, e.g. from read_news), one row per article in input
    order, whichever engine ran them. `model` is a bundle or checkpoint folder; `scorer` an open one instead
    (anything with .score(texts) and .bundle_hash runs in this process). `cache`: a ScoreCache, keyed by
    `bundle_hash` (default: the scorer's)."""
    from tqdm.auto import tqdm

    from ..runtime.engines import check_engine, open_engine, restore_order, score_part, worker_threads

    check_engine(engine, workers, address)
    missing = [c for c in ("article_id", "text") if c not in articles.columns]
    if missing:
        raise GptquantError(f"articles table lacks column(s) {', '.join(missing)}")
    if not isinstance(part_size, int) or part_size < 1:
        raise GptquantError(f"part_size must be a positive integer, got {part_size!r}")
    if articles["article_id"].duplicated().any():
        dup = articles.loc[articles["article_id"].duplicated(), "article_id"].iloc[0]
        raise GptquantError(f"article_id is not unique (e.g. {dup!r}); results are matched back by id")
    if scorer is None:
        from ..runtime.scorer import load_model

        # One verified session here: exports a checkpoint if needed, gives the bundle id, and scores
        # in-process when there is one local worker.
        scorer = load_model(model, threads=worker_threads(threads, workers) if engine == "local" else threads,
                            batch_size=batch_size, batch_tokens=batch_tokens)
    elif (engine, workers) != ("local", 1) and not hasattr(scorer, "bundle_dir"):
        raise GptquantError("a scorer without a bundle folder runs only in this process (engine local, 1 worker)")
    bundle_hash = bundle_hash or scorer.bundle_hash
    counts = counts if counts is not None else Counts()
    parts = make_parts(articles, part_size)
    if not parts:
        return score_part(scorer, articles[["article_id", "text"]])
    done = {}
    with open_engine(engine, bundle_dir=getattr(scorer, "bundle_dir", None), bundle_hash=bundle_hash,
                     workers=workers, threads=threads, batch_size=batch_size, address=address, scorer=scorer,
                     batch_tokens=batch_tokens) as run, \
            tqdm(total=len(articles), desc="scoring", unit="art", disable=None if progress else True) as bar:
        for start, feats in score_parts(parts, run, cache=cache, bundle_hash=bundle_hash, counts=counts):
            done[start] = feats
            bar.update(len(feats))
    result = restore_order(articles["article_id"], [done[s] for s, _ in parts])
    return result.astype(counts.dtypes, errors="ignore") if counts.dtypes else result


def score_with_cache(scorer, texts, cache, bundle_hash: str | None = None, batch_size: int = 256,
                     progress: bool = True) -> pd.DataFrame:
    """Features for every text, in input order, through the cache (`batch_size` texts per part), in this
    process; identical (normalised) texts are scored once. No article_id column."""
    texts = list(texts)
    articles = pd.DataFrame({"article_id": range(len(texts)), "text": pd.Series(texts, dtype=object)})
    out = score_articles(articles, scorer=scorer, part_size=batch_size, cache=cache, bundle_hash=bundle_hash,
                         progress=progress)
    return out.drop(columns="article_id")
