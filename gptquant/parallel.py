"""The one way the project runs work in parallel: a bounded map over an iterable, on a process pool or on
Ray, and forked named jobs that inherit this process's memory.

Bounded: at most `in_flight` items are submitted at a time and the next is read only when one finishes, so
a streamed input (parts of a large news file, a sweep grid) never piles up in the driver. Results come back
as they finish, each with its item; a task's exception comes back as the value instead of ending the map.

Workers die with their parent: on Linux each pool worker asks the kernel for SIGKILL when the process that
started it dies (PR_SET_PDEATHSIG), so a `kill -9` of a nightly or a `score --workers N` leaves no orphan
holding the lock or the CPU. (The signal follows the creating thread: pools are made in the caller's thread.)
"""
from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

_END = object()


def bounded(items, submit, wait_any, in_flight: int):
    """Drive any executor: `submit(item) -> handle`, `wait_any(handles) -> finished handles`; yields
    (item, handle) as handles finish, with at most `in_flight` submitted and not yet yielded."""
    todo, pending = iter(items), {}
    while True:
        while len(pending) < in_flight and (item := next(todo, _END)) is not _END:
            pending[submit(item)] = item
        if not pending:
            return
        for handle in wait_any(list(pending)):
            yield pending.pop(handle), handle


def die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: SIGKILL this process when its parent dies (Linux), and exit now if the
    parent is already gone (it died before the request was made)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def process_pool(workers: int, context: str = "spawn") -> ProcessPoolExecutor:
    """A process pool whose workers die with this process. "spawn" for code holding threads (ORT, strategies);
    "fork" to share this process's memory."""
    import multiprocessing as mp

    return ProcessPoolExecutor(workers, mp_context=mp.get_context(context), initializer=die_with_parent,
                               initargs=(os.getpid(),))


def _finished(futures):
    done, _ = wait(futures, return_when=FIRST_COMPLETED)
    return done


def pool_map(fn, items, workers: int, *, context: str = "spawn", per_worker: int = 2):
    """(item, fn(item) or the exception it raised) for every item, as they finish, on `workers` processes
    with at most `per_worker` items queued per worker. One worker runs them in this process, in order."""
    if workers <= 1:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as exc:  # same contract as a pool: the error is the item's value
                yield item, exc
        return
    with process_pool(workers, context) as pool:
        try:
            yield from map_on(pool, fn, items, per_worker * workers)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def map_on(pool, fn, items, in_flight: int):
    """pool_map on an open concurrent.futures pool (one that outlives a single map)."""
    for item, f in bounded(items, lambda it: pool.submit(fn, it), _finished, in_flight):
        yield item, (f.exception() or f.result())


def ray_map(ray, submit, items, in_flight: int, *, retries: int = 0, on_retry=None):
    """(item, result or exception) for every item on Ray, `submit(item) -> ObjectRef`, at most `in_flight`
    in flight; a task or worker failure (ray.exceptions.RayError) is the item's value. An item whose worker
    or node was lost is submitted again, up to `retries` times, calling `on_retry(item, exc, count so far)`;
    the others keep running meanwhile."""
    lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)
    todo, pending, count = iter(items), {}, 0
    while True:
        while len(pending) < in_flight and (item := next(todo, _END)) is not _END:
            pending[submit(item)] = (item, 0)
        if not pending:
            return
        for ref in ray.wait(list(pending), num_returns=1)[0]:
            item, tries = pending.pop(ref)
            try:
                value = ray.get(ref)
            except lost as exc:
                if tries < retries:
                    count += 1
                    if on_retry is not None:
                        on_retry(item, exc, count)
                    pending[submit(item)] = (item, tries + 1)
                    continue
                value = exc
            except ray.exceptions.RayError as exc:
                value = exc
            yield item, value


# ---- forked named jobs ------------------------------------------------------------------------------

_JOBS: tuple | None = None  # (fn, {name: job}) while the workers are being forked


def _run_named(name):
    fn, jobs = _JOBS
    return fn(jobs[name])


class ForkPool:
    """fn(job) for every {name: job} in at most `workers` forked processes, started at once; `futures` by name.

    For inputs too large to pickle into workers (the nightly's price table and panel, matplotlib figures):
    the forked workers see the jobs in inherited memory, only each job's name goes in and its result comes out."""

    def __init__(self, fn, jobs: dict, workers: int):
        global _JOBS
        self._pool = process_pool(max(1, min(workers, len(jobs))), "fork")
        _JOBS = (fn, jobs)
        try:  # with fork, every worker starts at the first submit, so each has the jobs before they are cleared
            self.futures: dict[str, Future] = {name: self._pool.submit(_run_named, name) for name in jobs}
        finally:
            _JOBS = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
