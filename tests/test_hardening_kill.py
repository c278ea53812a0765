"""kill -9 (or SIGTERM, Ctrl-C) of a running nightly at any stage: no worker outlives it, the lock is free, and the rerun finishes
with the same results as an uninterrupted run, keeping the texts it had already scored."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, write_config


# Runs one nightly in its own process; SIGKILLs itself at the start of stage `kill_at` (or, for "score",
# inside the scorer's second call, after the first part went into the cache). Lexicon features: no model needed.
DRIVER = textwrap.dedent('''
    import json, os, signal, sys
    import numpy as np, pandas as pd
    from gptquant.jobs import stages
    from gptquant.jobs.nightly import run_nightly

    config, kill_at, log = sys.argv[1], sys.argv[2], sys.argv[3]
    SIG = getattr(signal, sys.argv[4]) if len(sys.argv) > 4 else signal.SIGKILL
    # Ctrl-C as in a terminal: a shell that ran the tests in the background started us with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    GOOD, BAD = ("增长", "中标", "回购", "上调", "分红"), ("亏损", "立案", "减持", "下调", "诉讼")

    class Lexicon:
        bundle_hash = "lexicon-kill"
        texts = []

        def score(self, texts):
            texts = list(texts)
            if kill_at == "score" and self.texts and texts:
                os.kill(os.getpid(), SIG)
            self.texts += texts
            with open(log, "w") as fh:
                json.dump(len(self.texts), fh)
            pos = np.array([sum(w in t for w in GOOD) for t in texts], float)
            neg = np.array([sum(w in t for w in BAD) for t in texts], float)
            total = np.maximum(pos + neg, 1)
            return pd.DataFrame({"n_tokens": [len(t) for t in texts], "nll_mean": [3.0 + len(t) % 7 / 10 for t in texts],
                                 "sent_pos": pos / total, "sent_neg": neg / total, "sentiment": (pos - neg) / total})

    def killer(name, fn):
        def stage(run):
            if name == kill_at != "score":  # "score" dies inside the scorer instead
                os.kill(os.getpid(), SIG)
            return fn(run)
        return stage

    stages.SCORE_PART = 100  # ~220 articles in three parts, so a kill can land between two of them
    stages.STAGES = tuple((name, killer(name, fn)) for name, fn in stages.STAGES)
    res = run_nightly(config, scorer=Lexicon(), progress=False)
    print(json.dumps({"status": res["status"], "run_dir": res.get("run_dir")}))
''')


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "driver.py"
    path.write_text(DRIVER, encoding="utf-8")
    return path


def config_in(folder: Path, world: Path) -> Path:
    """The tiny world's nightly with a second backtest and two forked workers (so there are workers to orphan)."""
    topk = (REPO / "strategies" / "sentiment_topk.py").as_posix()
    return write_config(folder, world, top="workers = 2", extra=f'''
[[backtest]]
name = "topk_weekly"
module = "{topk}"
params = {{ top_k = 3, rebalance_every = 5 }}
''')


def night(driver: Path, config: Path, kill_at: str = "none", sig: str = "SIGKILL") -> subprocess.CompletedProcess:
    log = config.parent / f"scored-{kill_at}.json"
    return subprocess.run([sys.executable, str(driver), str(config), kill_at, str(log), sig],
                          capture_output=True, text=True, timeout=300, cwd=config.parent)


def survivors(driver: Path) -> list[str]:
    """Processes still running the driver (forked backtest workers carry the parent's command line)."""
    out = subprocess.run(["pgrep", "-f", str(driver)], capture_output=True, text=True).stdout
    return out.split()


def outputs(run_dir: Path) -> dict:
    return {"daily": {n: pd.read_csv(run_dir / "backtests" / n / "daily.csv") for n in ("topk", "topk_weekly")},
            "analysis": json.loads((run_dir / "analysis.json").read_text())}


@pytest.fixture(scope="module")
def reference(world, driver):
    done = night(driver, config_in(world / "reference", world))
    assert done.returncode == 0, done.stderr
    return outputs(Path(json.loads(done.stdout.strip().splitlines()[-1])["run_dir"])) | {
        "scored": scored(world / "reference", "none")}


def scored(folder: Path, kill_at: str) -> int:
    """Texts the driver's scorer saw (no file: it was never called)."""
    log = folder / f"scored-{kill_at}.json"
    return json.loads(log.read_text()) if log.exists() else 0


KILLS = [(stage, "SIGKILL") for stage in ("score", "panel", "analysis", "backtests", "report", "record")] + [
    (stage, sig) for stage in ("score", "backtests") for sig in ("SIGTERM", "SIGINT")]


@pytest.mark.slow
@pytest.mark.parametrize("stage,sig", KILLS)
def test_a_night_killed_at_any_stage_reruns_to_the_uninterrupted_result(world, driver, reference, tmp_path, stage, sig):
    config = config_in(tmp_path, world)
    killed = night(driver, config, stage, sig)
    assert killed.returncode != 0 and '"status": "ok"' not in killed.stdout, killed.stdout + killed.stderr
    deadline = time.time() + 10
    while survivors(driver) and time.time() < deadline:  # workers get SIGKILL from the kernel with their parent
        time.sleep(0.2)
    assert not survivors(driver), "a worker outlived the killed nightly"
    scored_before = scored(tmp_path, stage)
    rerun = night(driver, config)  # the lock died with its holder: no stale-lock error
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok"
    scored_after = scored(tmp_path, "none")
    if stage == "score":  # the part finished before the kill comes from the cache, the rest is scored now
        assert 0 < scored_before < reference["scored"] and scored_before + scored_after == reference["scored"]
    else:
        assert scored_before == reference["scored"] and scored_after == 0  # all scored and cached before the kill
    got = outputs(Path(result["run_dir"]))
    for name, frame in reference["daily"].items():
        pd.testing.assert_frame_equal(got["daily"][name], frame)
    assert got["analysis"] == reference["analysis"]
    assert not list(Path(result["run_dir"]).rglob("*.tmp"))
