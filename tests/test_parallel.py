"""gptquant.parallel: the bounded map every pool uses, and workers that die with their parent."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gptquant.parallel import ForkPool, bounded, pool_map

ROOT = Path(__file__).resolve().parents[1]


def _square(x):
    if x == 3:
        raise ValueError("three")
    return x * x


def test_bounded_reads_the_input_only_as_slots_free_up():
    read, submitted = [], []

    def items():
        for i in range(10):
            read.append(i)
            yield i

    seen = []
    for item, handle in bounded(items(), lambda it: (submitted.append(it), ("h", it))[1], lambda hs: hs[:1], 3):
        seen.append(item)
        assert len(read) - len(seen) <= 3  # never more than 3 read and not yet given back
    assert seen == list(range(10)) and submitted == list(range(10))


@pytest.mark.parametrize("workers", [1, 2])
def test_pool_map_returns_every_item_and_errors_as_values(workers):
    out = dict(pool_map(_square, range(6), workers))
    assert {k: v for k, v in out.items() if k != 3} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert isinstance(out[3], ValueError) and str(out[3]) == "three"


def test_fork_pool_runs_named_jobs_on_inherited_inputs():
    big = list(range(100_000))
    with ForkPool(lambda job: sum(job), {"a": big, "b": big[:10]}, 2) as pool:
        assert {n: f.result() for n, f in pool.futures.items()} == {"a": sum(big), "b": 45}


_PARENT = """
import os, sys, time
from pathlib import Path
from gptquant.parallel import ForkPool, pool_map

pids = Path(sys.argv[1])

def work(_):
    with open(pids, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(120)

if __name__ == "__main__":
    if sys.argv[2] == "fork":
        pool = ForkPool(work, {"a": 1, "b": 2}, 2)
        time.sleep(120)
    else:
        for _ in pool_map(work, range(4), 2, context=sys.argv[2]):
            pass
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has died; only its exit status is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_kill_9_of_the_parent_leaves_no_worker(tmp_path, context):
    script, pids = tmp_path / "parent.py", tmp_path / "pids.txt"
    script.write_text(textwrap.dedent(_PARENT))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    parent = subprocess.Popen([sys.executable, str(script), str(pids), context], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
            time.sleep(0.1)
        workers = [int(p) for p in pids.read_text().split()]
        assert len(workers) >= 2 and all(_alive(p) for p in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert [p for p in workers if _alive(p)] == [], "workers outlived their parent"
    finally:
        parent.kill()
        for p in [int(x) for x in pids.read_text().split()] if pids.exists() else []:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
