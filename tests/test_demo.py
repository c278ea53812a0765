"""The main job: `gptquant demo` on its own generated world shows the planted signal end to end."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("backtrader")


@pytest.mark.slow
def test_demo_report_shows_the_planted_signal(tmp_path):
    from gptquant.demo import run_demo

    summary = run_demo(tmp_path / "demo", steps=600, seed=7, threads=1)  # fixed steps: repeatable under load
    head = summary["headline"]
    assert head["status"] == "ok" and head["column"] == "sentiment_ewm", head
    assert summary["stages"]["sentiment"]["validation"]["accuracy"] > 0.8
    assert head["ic_mean"]["1D"] > 0.02 and head["rank_ic_mean"]["1D"] > 0.02, head
    daily = head["topk_daily"]
    assert daily["total_return"] > daily["benchmark_return"] + 0.05, daily
    report = (tmp_path / "demo" / "runs").rglob("report.html")
    html = next(report).read_text(encoding="utf-8")
    assert "sentiment_ewm" in html and "<script" not in html.lower()
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text(encoding="utf-8"))
    assert set(saved["stages"]) == {"world", "pretrain", "sentiment", "export", "nightly"}
