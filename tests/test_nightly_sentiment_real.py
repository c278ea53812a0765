"""backtests/astock_sentiment.toml on the shared Astock data with a (tiny) sentiment head, narrowed to three
months of 2020: the report ranks by sentiment_ewm and shows its Rank IC at 1, 5 and 10 sessions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import labelled

REPO = Path(__file__).resolve().parents[1]


def test_sentiment_config_analyses_sentiment_ewm_out_of_time(shared_data, tiny_checkpoint, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from gptquant.jobs.nightly import run_nightly
    from gptquant.lm.export import export_bundle
    from gptquant.lm.sentiment import train_sentiment

    labelled(90).to_csv(tmp_path / "labels.csv", index=False)
    train_sentiment(tiny_checkpoint, tmp_path / "labels.csv", tmp_path / "head", "linear", progress=False, baseline=False)
    export_bundle(tmp_path / "head", tmp_path / "bundle", max_length=64)  # fp32: a tiny model's head fails the int8 gate
    for key, value in {"GPTQUANT_CACHE": tmp_path / "cache", "GPTQUANT_DATA_ROOT": shared_data,
                       "GPTQUANT_SENTIMENT_MODEL": tmp_path / "bundle", "GPTQUANT_END": "2020-03-31"}.items():
        monkeypatch.setenv(key, str(value))
    res = run_nightly(REPO / "backtests" / "astock_sentiment.toml", out=tmp_path / "runs", progress=False)
    assert res["status"] == "ok", res["backtests"]
    run_dir = Path(res["run_dir"])
    analysis = json.loads((run_dir / "analysis.json").read_text(encoding="utf-8"))
    assert analysis["column"] == "sentiment_ewm"
    assert "2020-01-01" <= analysis["coverage"]["first"] and analysis["coverage"]["last"] <= "2020-03-31"
    assert set(analysis["ic_summary"]["rank_ic"]) == {"1D", "5D", "10D"}
    assert analysis["ic_summary"]["rank_ic"]["1D"]["n"] > 20 and set(analysis["long_short"]["mean"]) == {"1D", "5D", "10D"}
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Rank IC" in report and "sentiment_ewm" in report


def test_sentiment_config_needs_a_sentiment_model(shared_data, tmp_path, monkeypatch):
    from gptquant.errors import GptquantError
    from gptquant.jobs.nightly import run_nightly

    monkeypatch.delenv("GPTQUANT_SENTIMENT_MODEL", raising=False)
    monkeypatch.setenv("GPTQUANT_DATA_ROOT", str(shared_data))
    with pytest.raises(GptquantError, match="GPTQUANT_SENTIMENT_MODEL"):
        run_nightly(REPO / "backtests" / "astock_sentiment.toml", out=tmp_path, progress=False)
