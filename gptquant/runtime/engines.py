"""Where scoring runs: in this process, in a local process pool, or on Ray — one pure batch function for all.

`score_part(scorer, part)` turns a frame of (article_id, text) into feature rows; every engine opens one
ORT session per worker (the Scorer) and maps parts through that same function, so results are identical
wherever they ran. Engines hand parts back as they finish (unordered); callers put them back in order by
the part's key and check the article ids. Ray is imported only inside the Ray engine (`gptquant[ray]`).
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..errors import GptquantError
from ..parallel import bounded

ENGINES = ("local", "ray")
log = logging.getLogger(__name__)


def score_part(scorer, part: pd.DataFrame) -> pd.DataFrame:
    """The pure batch function: (article_id, text) rows -> article_id + feature columns, same order.
    `scorer` is a Scorer, or in this process anything with .score(texts) (a stand-in model in tests)."""
    texts = part["text"].tolist()
    if hasattr(scorer, "score_batches"):
        chunks = list(scorer.score_batches(texts, chunk_size=scorer.batch_size * 4))
        feats = pd.concat(chunks, ignore_index=True) if chunks else scorer._empty()
    else:
        feats = scorer.score(texts) if texts else pd.DataFrame(index=range(0))
        feats = feats.drop(columns=[c for c in ("article_id", "text") if c in feats.columns]).reset_index(drop=True)
    feats.insert(0, "article_id", part["article_id"].to_numpy())
    return feats


def worker_threads(threads: int | None, workers: int) -> int | None:
    """ORT intra-op threads per worker: the given number, else this machine's cores shared out (>= 1),
    so N workers do not each start a thread per core. One worker keeps ORT's own default."""
    if threads:
        return threads
    if workers <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def check_engine(kind: str, workers, address: str | None = None) -> None:
    if kind not in ENGINES:
        raise GptquantError(f"engine must be one of {', '.join(ENGINES)}, got {kind!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise GptquantError(f"workers must be a positive integer, got {workers!r}")
    if address and kind != "ray":
        raise GptquantError("--address applies only to --engine ray")


@contextmanager
def open_engine(kind: str = "local", *, bundle_dir, bundle_hash: str, workers: int = 1, threads: int | None = None,
                batch_size: int = 32, address: str | None = None, scorer=None, batch_tokens: int = 512):
    """An engine: a callable `map(parts)` taking (key, DataFrame[article_id, text]) pairs and yielding
    (key, features) as parts finish. `local` with one worker scores in this process (reusing `scorer`
    when given); more workers use a spawned process pool. `ray` uses one actor per worker."""
    check_engine(kind, workers, address)
    spec = (str(bundle_dir), bundle_hash, worker_threads(threads, workers), batch_size, batch_tokens)
    if kind == "ray":
        with _ray_engine(spec, workers, address) as run:
            yield run
    elif workers == 1:
        if scorer is None:
            scorer = _open_scorer(*spec)
        yield lambda parts: ((key, score_part(scorer, part)) for key, part in parts)
    else:
        with _pool_engine(spec, workers) as run:
            yield run


def restore_order(article_ids: pd.Series, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate part results and put rows in the order of `article_ids`, refusing any lost or extra row."""
    result = pd.concat(frames, ignore_index=True)
    ids = pd.Index(article_ids)
    got = result["article_id"]
    if len(result) != len(ids) or got.duplicated().any() or not got.isin(ids).all():
        raise GptquantError(f"engine returned {len(result)} rows for {len(ids)} articles; ids do not match")
    if got.tolist() != ids.tolist():
        result = result.set_index("article_id").loc[ids].reset_index()
    return result


# ---- workers ------------------------------------------------------------------------------------

def _open_scorer(bundle_dir: str, bundle_hash: str, threads, batch_size, batch_tokens=512, label=None):
    """A worker's one session, refusing a bundle that differs from the driver's (e.g. another copy on a node)."""
    from .scorer import Scorer

    scorer = Scorer(bundle_dir, threads=threads, batch_size=batch_size, batch_tokens=batch_tokens)
    if scorer.bundle_hash != bundle_hash:
        raise GptquantError(f"{label or bundle_dir}: this worker sees bundle {scorer.bundle_hash}, the driver {bundle_hash}")
    return scorer


_SCORER = None  # a pool worker's one session, opened by its first task


def _pool_task(spec, item):
    """Opening the session inside the task (not in a pool initializer) lets its error reach the caller."""
    global _SCORER
    if _SCORER is None:
        _SCORER = _open_scorer(*spec)
    key, part = item
    return key, score_part(_SCORER, part)


@contextmanager
def _pool_engine(spec, workers: int):
    """Spawned processes (not forked: ORT's thread pools do not survive a fork), at most 2 parts in
    flight per worker so memory stays bounded however many parts there are (gptquant.parallel)."""
    from functools import partial

    from ..parallel import map_on, process_pool

    pool = process_pool(workers)

    def run(parts):
        for _, out in map_on(pool, partial(_pool_task, spec), parts, 2 * workers):
            if isinstance(out, BaseException):
                raise out
            yield out

    try:
        yield run
    finally:
        pool.shutdown(cancel_futures=True)


def _pack_bundle(bundle_dir: str) -> bytes:
    """The bundle's verified files as one .tar.gz, for the object store (nodes need no files of ours)."""
    import tempfile

    from .tools import pack

    with tempfile.TemporaryDirectory(prefix="gptquant-pack-") as tmp:
        return pack(bundle_dir, Path(tmp) / "bundle.tar.gz").read_bytes()


def _unpack_bundle(packed: bytes) -> Path:
    """A worker's own copy of the shipped bundle, in its temp folder (checked file by file on extraction,
    and by the Scorer's manifest hashes when opened)."""
    import tempfile

    from .tools import _extract_tar

    stage = Path(tempfile.mkdtemp(prefix="gptquant-bundle-"))
    archive = stage.with_suffix(".tar.gz")
    archive.write_bytes(packed)
    try:
        _extract_tar(archive, stage)
    finally:
        archive.unlink()
    return stage


class ScorerActor:
    """A Ray actor holding one session on its own unpacked copy of the driver's bundle; `score` is
    score_part on its Scorer."""

    def __init__(self, packed: bytes, spec, driver_version: str):
        import shutil

        from ..ray_session import check_version

        check_version(driver_version)
        local = _unpack_bundle(packed)
        try:
            self.scorer = _open_scorer(str(local), *spec[1:], label=spec[0])
        finally:  # the session and tokenizer are in memory once opened
            shutil.rmtree(local, ignore_errors=True)

    def ready(self) -> bool:
        return True

    def score(self, item):
        key, part = item
        return key, score_part(self.scorer, part)


@contextmanager
def _ray_engine(spec, workers: int, address: str | None):
    """One actor per worker (1 CPU each in Ray's accounting), on the cluster ray_session connects to, or a
    local Ray started for the run. The bundle goes once into the object store; more workers than free CPUs
    is refused up front (Ray would wait forever); a part whose worker died is retried on a new actor.
    (Ray Data's map_batches on an actor pool scores as fast once running but starts ~8 s slower per run and
    wants the whole input up front: benchmarks/ray_data_vs_actors.py.)"""
    from ..version import __version__
    from ..ray_session import check_room, ray_session, worker_failure

    with ray_session(max(workers, os.cpu_count() or 1), address) as ray:
        check_room(ray, workers)
        packed = ray.put(_pack_bundle(spec[0]))
        actor = ray.remote(num_cpus=1)(ScorerActor)

        def start():
            return actor.remote(packed, spec, __version__)

        actors = [start() for _ in range(workers)]
        try:
            ray.get([a.ready.remote() for a in actors])  # opening errors (bundle, version) surface here, once
        except ray.exceptions.RayError as exc:
            raise worker_failure(ray, exc, "scoring") from None
        retried = 0

        def retry(item, exc):
            """The part again on a fresh actor (at most twice); the dead actor's CPU is free again."""
            nonlocal retried
            for _ in range(2):
                retried += 1
                log.warning("lost a Ray scoring worker (%s); part %s retried on a new one (%d retries so far)",
                            type(exc).__name__, item[0], retried)
                fresh = start()
                actors.append(fresh)
                try:
                    return fresh, ray.get(fresh.score.remote(item))
                except ray.exceptions.RayActorError as again:
                    exc = again
            raise worker_failure(ray, exc, "scoring")

        def run(parts):
            """Bounded submission: a part is read from `parts` only when an actor is free, so a streamed
            input never piles up in the driver (ActorPool.map_unordered would queue it all)."""
            idle, busy = list(actors), {}

            def submit(item):
                a = idle.pop()
                ref = a.score.remote(item)
                busy[ref] = a
                return ref

            for item, ref in bounded(parts, submit, lambda refs: ray.wait(refs, num_returns=1)[0], workers):
                a = busy.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    a, out = retry(item, exc)
                except ray.exceptions.RayError as exc:
                    raise worker_failure(ray, exc, "scoring") from None
                idle.append(a)
                yield out

        try:
            yield run
        finally:
            for a in actors:
                ray.kill(a)
