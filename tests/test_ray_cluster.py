"""Against a real, separate Ray cluster (`ray start --head`, 2 CPUs, its own temp dir and working directory),
reached through RAY_ADDRESS alone, as a user's cluster would be: scoring with a relative bundle path and a
sweep with a relative --out give the local results and leave no file outside --out; more workers than CPUs
is one clear error; a worker killed mid-run is replaced and the run's result is unchanged."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import WORDS, check_sweep_results
from gptquant.errors import GptquantError
from gptquant.features.pipeline import score_articles
from gptquant.runtime.engines import open_engine

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gptquant[ray]'")
psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.slow  # a cluster start-up (~15 s on 2 cores) and four runs: about a minute


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, the cluster's working directory, the pid of its `ray start --block`). Teardown ends that
    process and its descendants only (`ray stop` would stop every Ray on the machine)."""
    if ray.is_initialized():
        ray.shutdown()
    temp = Path(tempfile.mkdtemp(prefix="gqr", dir="/tmp"))  # short: Ray's socket paths live under it
    cwd = tmp_path_factory.mktemp("cluster_cwd")
    port, client, agent, agent_grpc, metrics, env_agent = _free_ports(6)
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus", "2",
           "--port", str(port), "--temp-dir", str(temp), "--include-dashboard=false", "--disable-usage-stats",
           "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
           "--runtime-env-agent-port", str(env_agent)]
    # Token authentication (Ray's default for new clusters) with a token of the cluster's own, which the
    # driver is given the way a user's shell would: RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH.
    (temp / "token").write_text(os.urandom(16).hex())
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(temp / "token")}
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, **auth})
    env = pytest.MonkeyPatch()
    for k, v in auth.items():
        env.setenv(k, v)
    env.delenv("RAY_AUTH_TOKEN", raising=False)
    _reload_auth()
    try:
        lines, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("ray start exited:\n" + "".join(lines))
            lines.append(line)
            if "Ray runtime started" in line:
                break
        else:
            raise RuntimeError("ray start did not come up in 120 s:\n" + "".join(lines))
        yield f"127.0.0.1:{port}", cwd, proc.pid
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(proc)
        env.undo()
        _reload_auth()
        shutil.rmtree(temp, ignore_errors=True)


def _reload_auth() -> None:
    """Ray reads its auth settings once per process; this test process changes them mid-run."""
    from ray._private.authentication_test_utils import reset_auth_token_state

    reset_auth_token_state()


def _stop(proc) -> None:
    """End this cluster only: `ray start --block` stops its processes on SIGTERM; any of its descendants
    still alive after that (workers) are killed by pid."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    _, alive = psutil.wait_procs(tree, timeout=10)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture()
def via_env(cluster, monkeypatch, tmp_path):
    """RAY_ADDRESS only, and a working directory of the test's own (not the cluster's)."""
    address, cwd, _ = cluster
    monkeypatch.setenv("RAY_ADDRESS", address)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _articles(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 14)))) for _ in range(n)]
    return pd.DataFrame({"article_id": range(1000, 1000 + n), "text": texts})


def test_score_through_ray_address_with_a_relative_bundle(cluster, via_env, synth_bundle):
    shutil.copytree(synth_bundle, via_env / "model")
    before = _files(cluster[1])
    articles = _articles(60)
    local = score_articles(articles, "model", part_size=7)
    on_cluster = score_articles(articles, "model", engine="ray", workers=2, part_size=7)
    pd.testing.assert_frame_equal(on_cluster, local)
    assert _files(cluster[1]) == before  # the workers unpacked the shipped bundle in their own temp folders
    assert _files(via_env) == {"model", *(f"model/{p}" for p in _files(synth_bundle))}


def test_score_cli_through_ray_address_with_relative_paths(cluster, via_env, synth_bundle):
    from gptquant.cli import main

    shutil.copytree(synth_bundle, via_env / "model")
    news = _articles(40, seed=2).rename(columns={"article_id": "id"}).assign(datetime="2021-03-01 09:00", codes="600519")
    news.to_csv("news.csv", index=False)
    before = _files(cluster[1])
    for engine, out in (("local", "local/f.parquet"), ("ray", "out/f.parquet")):
        Path(out).parent.mkdir()
        assert main(["score", "--model", "model", "--news", "news.csv", "--out", out, "--engine", engine,
                     "--workers", "2" if engine == "ray" else "1", "--part-size", "9"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet("out/f.parquet"), pd.read_parquet("local/f.parquet"))
    assert _files(cluster[1]) == before
    stray = [f for f in _files(via_env) if f != "news.csv" and f.split("/")[0] not in ("model", "local", "out")]
    assert not stray


def test_sweep_through_ray_address_with_a_relative_out_needs_no_files_on_the_workers(cluster, via_env, sweep_project,
                                                                                    local_sweep, monkeypatch):
    """The driver reads prices, panel, benchmark and strategy once and ships them: deleted right after that
    (before any task starts), the sweep still gives the local results."""
    import gptquant.backtest.shipped as shipped
    from gptquant.backtest.sweep import run_sweep

    project = via_env.parent / "project"
    shutil.copytree(sweep_project, project)
    inputs = ("bars.csv", "panel.parquet", "csi300.csv", "strat.py")
    real_ship = shipped.ship

    def ship_then_delete(config, base):
        out = real_ship(config, base)
        for name in inputs:
            (project / name).unlink()
        return out

    monkeypatch.setattr(shipped, "ship", ship_then_delete)
    before = _files(cluster[1])
    on_cluster = run_sweep(Path("../project/sweep.toml"), "out", engine="ray", workers=2, progress=False)
    check_sweep_results(on_cluster, via_env / "out")
    assert _files(via_env) == {"out", *(f"out/{p}" for p in _files(via_env / "out"))}
    assert _files(cluster[1]) == before  # nothing written by the workers
    assert _files(project) == {"sweep.toml"}  # the inputs were gone while the tasks ran; nothing written there
    pd.testing.assert_frame_equal(on_cluster.drop(columns="seconds"), local_sweep)


@pytest.fixture(scope="module")
def local_sweep(sweep_project, tmp_path_factory):
    from gptquant.backtest.sweep import run_sweep

    return run_sweep(sweep_project / "sweep.toml", tmp_path_factory.mktemp("local"), workers=1,
                     progress=False).drop(columns="seconds")


def test_more_workers_than_the_cluster_has_is_one_clear_error(cluster, via_env, synth_bundle):
    with pytest.raises(GptquantError) as err:
        score_articles(_articles(5), synth_bundle, engine="ray", workers=3)
    assert str(err.value) == "--workers 3 needs 3 CPUs but the Ray cluster has 2 free (of 2); use --workers 2 or add nodes"


def test_a_worker_killed_mid_run_is_replaced_and_the_result_unchanged(cluster, via_env, synth_bundle, caplog):
    from gptquant.runtime.scorer import Scorer

    scorer = Scorer(synth_bundle)
    articles = _articles(120, seed=5)
    parts = [(s, articles.iloc[s: s + 6]) for s in range(0, len(articles), 6)]
    got, killed = {}, []
    with caplog.at_level(logging.WARNING, logger="gptquant.runtime.engines"), \
            open_engine("ray", bundle_dir=synth_bundle, bundle_hash=scorer.bundle_hash, workers=2) as run:
        for key, feats in run(iter(parts)):
            got[key] = feats
            if not killed:
                tree = psutil.Process(cluster[2]).children(recursive=True)
                actors = [p for p in tree if (p.cmdline() or [""])[0].startswith("ray::ScorerActor")]
                assert len(actors) == 2
                actors[0].kill()
                killed.append(actors[0].pid)
    assert sorted(got) == [s for s, _ in parts]
    expected = scorer.score(articles["text"].tolist())
    result = pd.concat([got[s] for s, _ in parts], ignore_index=True)
    assert result["article_id"].tolist() == articles["article_id"].tolist()
    pd.testing.assert_frame_equal(result.drop(columns="article_id"), expected)
    retries = [r.getMessage() for r in caplog.records if "retried on a new one" in r.getMessage()]
    assert len(retries) == 1 and "(1 retries so far)" in retries[0]


def test_a_sweep_worker_killed_mid_task_is_run_again_with_a_count_in_the_log(cluster, via_env, sweep_project,
                                                                             local_sweep, caplog):
    from gptquant.backtest.sweep import run_sweep

    killed = []

    def kill_the_first_task():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for p in psutil.Process(cluster[2]).children(recursive=True):
                try:
                    if (p.cmdline() or [""])[0].startswith("ray::_ray_task"):  # a worker while it runs a task
                        p.kill()
                        killed.append(p.pid)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_first_task)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="gptquant.backtest.sweep"):
        table = run_sweep(sweep_project / "sweep.toml", "out", engine="ray", workers=2, progress=False)
    killer.join()
    assert killed
    check_sweep_results(table, via_env / "out")
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), local_sweep)
    retries = [r.getMessage() for r in caplog.records if "run again" in r.getMessage()]
    assert len(retries) == 1 and "WorkerCrashedError" in retries[0] and "(1 retries so far)" in retries[0]


@pytest.mark.parametrize("face", ["score", "sweep"])
def test_a_wrong_address_fails_in_seconds_with_the_reason(face, synth_bundle, sweep_project, monkeypatch, tmp_path):
    """Nothing listening there: one error within seconds (ray.init alone retries for minutes)."""
    from gptquant.backtest.sweep import run_sweep

    address = f"127.0.0.1:{_free_ports(1)[0]}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    t0 = time.monotonic()
    with pytest.raises(GptquantError) as err:
        if face == "score":
            score_articles(_articles(3), synth_bundle, engine="ray", workers=1)
        else:
            run_sweep(sweep_project / "sweep.toml", tmp_path / "out", engine="ray", workers=1, progress=False)
    assert time.monotonic() - t0 < 15
    assert str(err.value).startswith(f"cannot reach the Ray cluster at {address}: nothing answers there "
                                     "(ConnectionRefusedError: [Errno 111] Connection refused)")
