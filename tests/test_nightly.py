"""The nightly job end to end on a tiny generated world, with a lexicon scorer standing in for the model."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gptquant.errors import GptquantError
from gptquant.features.cache import text_key
from gptquant.history import History, compare
from conftest import REPO, write_config
from gptquant.jobs.nightly import load_config, run_lock, run_nightly

POSITIVE = ("增长", "中标", "回购", "供货协议", "上调", "获得监管部门批准", "计划增持", "分红")
NEGATIVE = ("亏损", "立案", "计划减持", "下调", "召回", "诉讼", "终止", "预警")


class LexiconScorer:
    """Counts good and bad words: a scorer whose sentiment carries the demo world's planted signal."""

    bundle_hash = "lexicon-v1"

    def __init__(self):
        self.calls, self.texts = 0, 0

    def score(self, texts):
        texts = list(texts)
        self.calls += 1
        self.texts += len(texts)
        pos = np.array([sum(w in t for w in POSITIVE) for t in texts], dtype=float)
        neg = np.array([sum(w in t for w in NEGATIVE) for t in texts], dtype=float)
        total = np.maximum(pos + neg, 1)
        return pd.DataFrame({"n_tokens": [len(t) for t in texts], "nll_mean": [3.0 + len(t) % 7 / 10 for t in texts],
                             "sent_pos": pos / total, "sent_neg": neg / total, "sentiment": (pos - neg) / total})


def test_whole_nightly_writes_every_output_and_shows_the_planted_signal(world, tmp_path):
    config = write_config(tmp_path, world)
    scorer = LexiconScorer()
    res = run_nightly(config, scorer=scorer, progress=False)
    run_dir = Path(res["run_dir"])
    assert res["status"] == "ok" and res["failed"] == []
    assert run_dir.parent == tmp_path / "runs" / "tiny"
    assert (tmp_path / "runs" / "tiny" / "latest").read_text().strip() == res["run_id"]
    for name in ("features.parquet", "panel.parquet", "analysis.json", "report.html", "figures.json", "run.json",
                 "figures/equity.png", "figures/ic_session.png", "figures/quantiles.png", "backtests/topk/summary.json"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / ".bars.parquet").exists()
    assert set(res["timings"]) == {"load", "score", "panel", "analysis", "backtests", "report", "record"}
    # the planted signal: sentiment predicts the next sessions' returns, and trading it beats the benchmark
    assert res["analysis"]["column"] == "sentiment_ewm"
    assert res["analysis"]["rank_ic"]["1D"] > 0.05
    summary = res["backtests"][0]["summary"]
    assert summary["total_return"] > summary["benchmark_return"]
    figs = json.loads((run_dir / "figures.json").read_text(encoding="utf-8"))
    assert figs["headlines"]["feature"] == "sentiment" and figs["headlines"]["top"]
    assert figs["equity"]["topk"]["benchmark"][-1] == pytest.approx(1 + summary["benchmark_return"], rel=1e-6)
    html_text = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "tiny world &lt;nightly&gt;" in html_text and "<nightly>" not in html_text
    assert "no previous run" in html_text


def test_second_run_with_one_percent_more_news_scores_only_the_new_articles(world, tmp_path):
    news = pd.read_csv(world / "world" / "news.csv")
    n_new = max(1, len(news) // 100)
    part = tmp_path / "news_part.csv"
    news.iloc[:-n_new].to_csv(part, index=False)
    config = write_config(tmp_path / "cfg", world, news=part.as_posix())
    old = {text_key(t) for t in news["text"].iloc[:-n_new]}  # identical texts are scored once
    new = {text_key(t) for t in news["text"].iloc[-n_new:]} - old
    assert new
    first = LexiconScorer()
    r1 = run_nightly(config, scorer=first, progress=False)
    assert first.texts == len(old) and r1["scored"] == first.texts
    news.to_csv(part, index=False)  # the night's new articles arrive
    second = LexiconScorer()
    r2 = run_nightly(config, scorer=second, progress=False)
    assert second.texts == len(new) and r2["articles"] == len(news)
    assert r2["status"] == "ok" and r2["run_id"] != r1["run_id"]
    # history: both runs, the comparison lists the backtest's metrics and flags any sharpe change (threshold 0)
    with History(tmp_path / "cfg" / "runs" / "history.sqlite") as h:
        runs = h.runs("tiny")
    assert [r["run_id"] for r in runs] == [r1["run_id"], r2["run_id"]]
    assert runs[1]["scored"] == len(new) and runs[1]["bundle_hash"] == "lexicon-v1"
    assert set(runs[1]["timings"]) >= {"score", "backtests"} and runs[0]["backtests"][0]["summary"]["sharpe"] is not None
    rows = {r["metric"]: r for r in r2["comparison"]}
    sharpe = rows["topk.sharpe"]
    assert sharpe["previous"] == pytest.approx(runs[0]["backtests"][0]["summary"]["sharpe"])
    assert sharpe["flagged"] == (sharpe["change"] != 0)
    assert not rows["analysis.rank_ic.1D"]["flagged"]  # threshold 1.0
    # nothing new: the third run is skipped, unless forced
    third = LexiconScorer()
    assert run_nightly(config, scorer=third, progress=False)["skipped"] and third.calls == 0
    forced = run_nightly(config, scorer=third, progress=False, force=True)
    assert not forced["skipped"] and third.texts == 0  # everything from the cache


def test_a_failing_backtest_is_recorded_the_others_run_and_the_exit_code_says_so(world, tmp_path, monkeypatch, capsys):
    import gptquant.lm.bundle_cache
    from gptquant.cli import main

    monkeypatch.setattr(gptquant.lm.bundle_cache, "load_model", lambda path, **kw: LexiconScorer())
    config = write_config(tmp_path, world, failing=True)
    assert main(["nightly", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAILED backtest(s): broken" in out
    with History(tmp_path / "runs" / "history.sqlite") as h:
        run = h.runs("tiny")[-1]
    by_name = {b["name"]: b for b in run["backtests"]}
    assert run["status"] == "failed"
    assert by_name["topk"]["status"] == "ok" and by_name["topk"]["summary"]["sharpe"] is not None
    assert by_name["broken"]["status"] == "failed" and "always fails" in by_name["broken"]["error"]
    run_dir = Path(run["run_dir"])
    assert "always fails" in (run_dir / "backtests" / "broken" / "error.txt").read_text()
    assert "always fails" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_the_lock_refuses_a_concurrent_run_of_the_same_config(world, tmp_path, monkeypatch, capsys):
    import gptquant.lm.bundle_cache
    from gptquant.cli import main

    monkeypatch.setattr(gptquant.lm.bundle_cache, "load_model", lambda path, **kw: LexiconScorer())
    config = write_config(tmp_path, world)
    with run_lock(tmp_path / "runs" / "tiny" / ".lock", "the test"):
        with pytest.raises(GptquantError, match="another nightly run .* is in progress"):
            run_nightly(config, scorer=LexiconScorer(), progress=False)
        assert main(["nightly", str(config)]) == 2
        assert "in progress" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "history.sqlite").exists() or not History(tmp_path / "runs" / "history.sqlite").runs("tiny")
    assert main(["nightly", str(config)]) == 0  # free again once the holder is gone


def test_a_stage_error_is_recorded_and_raised_with_the_stage_name(world, tmp_path):
    config = write_config(tmp_path, world, extra='[panel]\ncolumns = ["no_such_feature"]\n')
    with pytest.raises(GptquantError, match="stage panel failed: .*no_such_feature"):
        run_nightly(config, scorer=LexiconScorer(), progress=False)
    db = sqlite3.connect(tmp_path / "runs" / "history.sqlite")
    (status,), = db.execute("SELECT status FROM runs").fetchall()
    assert status == "error"
    assert not (tmp_path / "runs" / "tiny" / "latest").exists()


def test_config_expands_environment_variables_and_rejects_unknown_keys(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('root = "${GQ_TEST_ROOT:-/data/default}"\n[news]\nsource = "${GQ_TEST_NEWS}/n.csv"\n'
                    '[prices]\nbars = "b.csv"\n[model]\nbundle = "m"\n', encoding="utf-8")
    monkeypatch.delenv("GQ_TEST_ROOT", raising=False)
    with pytest.raises(GptquantError, match="news.source: environment variable GQ_TEST_NEWS is not set"):
        load_config(path)
    monkeypatch.setenv("GQ_TEST_NEWS", "/n")
    cfg = load_config(path)
    assert cfg["root"] == "/data/default" and cfg["news"]["source"] == "/n/n.csv"
    monkeypatch.setenv("GQ_TEST_ROOT", "/elsewhere")
    assert load_config(path)["root"] == "/elsewhere"
    path.write_text(path.read_text() + "[panel]\nhalflive = 3\n", encoding="utf-8")
    with pytest.raises(GptquantError, match="unknown config key.*panel.halflive"):
        load_config(path)


def test_a_wrong_type_fails_at_load_naming_its_key_before_any_work(world, tmp_path, monkeypatch):
    """`quantiles = "five"` used to pass loading, score every article and build the panel, then die in
    int() with no key name; now loading refuses it, and the run never starts."""
    import time

    config = write_config(tmp_path, world)
    good = config.read_text(encoding="utf-8")
    config.write_text(good.replace("horizons = [1, 5]", 'horizons = [1, 5]\nquantiles = "five"'), encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(GptquantError, match=r"tiny.toml: analysis\.quantiles: expected int, got str"):
        load_config(config)
    print(f"wrong type refused in {1000 * (time.perf_counter() - t0):.1f} ms")
    scorer = LexiconScorer()
    with pytest.raises(GptquantError, match="analysis.quantiles"):
        run_nightly(config, scorer=scorer, progress=False)
    assert scorer.calls == 0 and not (tmp_path / "runs").exists()
    config.write_text(good.replace("rebalance_every = 1 }", 'rebalance_every = 1 }\ncapital_base = "lots"'), encoding="utf-8")
    with pytest.raises(GptquantError, match=r"backtest\[0\]\.capital_base: expected float, got str"):
        load_config(config)
    # a value from ${VAR} is read as the type its key needs
    monkeypatch.setenv("GQ_TEST_QUANTILES", "4")
    config.write_text(good.replace("horizons = [1, 5]", 'horizons = [1, 5]\nquantiles = "${GQ_TEST_QUANTILES}"'),
                      encoding="utf-8")
    assert load_config(config)["analysis"]["quantiles"] == 4


def test_compare_flags_only_changes_beyond_their_threshold():
    prev = {"backtests": [{"name": "a", "status": "ok", "summary": {"sharpe": 1.0, "max_drawdown": -0.10}}],
            "analysis": {"rank_ic": {"1D": 0.05}}}
    cur = {"backtests": [{"name": "a", "status": "ok", "summary": {"sharpe": 1.5, "max_drawdown": -0.12}}],
           "analysis": {"rank_ic": {"1D": 0.06}}}
    rows = {r["metric"]: r for r in compare(prev, cur, {"sharpe": 0.3, "max_drawdown": 0.05, "rank_ic": 0.02})}
    assert rows["a.sharpe"]["flagged"] and rows["a.sharpe"]["change"] == pytest.approx(0.5)
    assert not rows["a.max_drawdown"]["flagged"] and not rows["analysis.rank_ic.1D"]["flagged"]
    cur["backtests"][0] = {"name": "a", "status": "failed", "summary": None}
    assert [r["metric"] for r in compare(prev, cur, {}) if r["flagged"]] == ["a.status"]
    assert compare(None, cur, {}) == []


def test_next_night_resumes_the_backtests_and_matches_a_full_run(world, tmp_path):
    """Night 2 has 5 % more news (the latest): the backtests continue from their checkpoints, and every file
    they write equals that of a run from scratch on the same data."""
    news = pd.read_csv(world / "world" / "news.csv", dtype=str, keep_default_na=False)
    news = news.iloc[pd.to_datetime(news["datetime"]).argsort(kind="stable")]
    source = tmp_path / "incoming.csv"
    news.iloc[: int(len(news) * 0.95)].to_csv(source, index=False)
    event = (REPO / "strategies" / "news_event.py").as_posix()
    extra = f'''
[[backtest]]
name = "event"
module = "{event}"
universe = "all"
params = {{ column = "sentiment_mean", enter_above = 0.3, exit_below = -0.3, hold_sessions = 3 }}
columns = ["sentiment_mean"]
'''
    config = write_config(tmp_path / "nightly", world, news=source.as_posix(), extra=extra)
    first = run_nightly(config, scorer=LexiconScorer(), progress=False)
    assert all("full run" in b["resume"] for b in first["backtests"])
    news.to_csv(source, index=False)  # the night's news arrives
    second = run_nightly(config, scorer=LexiconScorer(), progress=False)
    assert second["status"] == "ok"
    assert all("resumed" in b["resume"] for b in second["backtests"]), [b["resume"] for b in second["backtests"]]
    fresh = run_nightly(config, scorer=LexiconScorer(), progress=False, out=tmp_path / "fresh")
    assert all("full run" in b["resume"] for b in fresh["backtests"])
    for b in ("topk", "event"):
        for name in ("daily.csv", "orders.csv", "trades.csv", "summary.json"):
            resumed = (Path(second["run_dir"]) / "backtests" / b / name).read_text(encoding="utf-8")
            assert resumed == (Path(fresh["run_dir"]) / "backtests" / b / name).read_text(encoding="utf-8"), (b, name)
        assert (Path(second["run_dir"]) / "backtests" / b / "orders.csv").read_text().count("\n") > 5  # it traded


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_every_output_gets_the_users_umask_so_colleagues_can_read_it(world, tmp_path, mask):
    """A report written by one user is readable by the group (and, under 022, a web server): files 0644 /
    0640 and folders 0755 / 0750 as a plain open() or mkdir() would give, not mkstemp's 0600."""
    import os
    import stat

    config = write_config(tmp_path, world)
    old = os.umask(mask)
    try:
        res = run_nightly(config, scorer=LexiconScorer(), progress=False)
    finally:
        os.umask(old)
    out = tmp_path / "runs"
    paths = [out, *out.rglob("*")]
    assert Path(res["run_dir"]) / "report.html" in paths and len(paths) > 15
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~mask}
    assert wrong == {}
