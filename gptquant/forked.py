"""Named jobs in forked worker processes that inherit their inputs from this process's memory.

The nightly's backtests take a 600k-row price table and a panel; the report's figures are matplotlib
objects. Pickling those into spawned workers would cost more than the work, so the workers are forked
after the jobs are put where they can see them, and only each job's name goes in and its result comes out.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

_JOBS: tuple | None = None  # (fn, {name: job}) while the workers are being forked


def _run(name):
    fn, jobs = _JOBS
    return fn(jobs[name])


class ForkPool:
    """fn(job) for every {name: job} in at most `workers` forked processes; `futures` by name, started at once."""

    def __init__(self, fn, jobs: dict, workers: int):
        global _JOBS
        self._pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))),
                                         mp_context=multiprocessing.get_context("fork"))
        _JOBS = (fn, jobs)
        try:  # with fork, every worker starts at the first submit, so each has the jobs before they are cleared here
            self.futures: dict[str, Future] = {name: self._pool.submit(_run, name) for name in jobs}
        finally:
            _JOBS = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
