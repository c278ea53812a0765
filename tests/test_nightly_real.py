"""backtests/astock_real.toml on the shared Astock data, narrowed to three months (skips without ../shared)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle_cache(fixture_model, tmp_path_factory):
    """The fixture checkpoint exported once (int8) into a bundle cache the nightly's load_model finds."""
    pytest.importorskip("torch")
    from gptquant import load_model

    cache = tmp_path_factory.mktemp("gqcache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GPTQUANT_CACHE", str(cache))
    load_model(fixture_model)
    yield cache
    mp.undo()


def test_real_data_config_runs_on_a_narrowed_window(shared_data, fixture_model, bundle_cache, tmp_path, monkeypatch):
    from gptquant.jobs.nightly import run_nightly

    for key, value in {"GPTQUANT_CACHE": bundle_cache, "GPTQUANT_DATA_ROOT": shared_data, "GPTQUANT_MODEL": fixture_model,
                       "GPTQUANT_START": "2019-01-01", "GPTQUANT_END": "2019-03-31"}.items():
        monkeypatch.setenv(key, str(value))
    res = run_nightly(REPO / "backtests" / "astock_real.toml", out=tmp_path, progress=False)
    assert res["status"] == "ok", res["backtests"]
    news = pd.read_csv(shared_data / "astock_news" / "astock_news.csv", usecols=["datetime"])
    t = pd.to_datetime(news["datetime"])
    in_window = int(((t >= "2019-01-01") & (t < "2019-04-01")).sum())
    assert res["articles"] == in_window and res["scored"] > 0
    run_dir = Path(res["run_dir"])
    analysis = json.loads((run_dir / "analysis.json").read_text(encoding="utf-8"))
    assert analysis["column"] == res["analysis"]["column"]
    assert analysis["ic_summary"]["rank_ic"]["1D"]["n"] > 20  # sessions with enough names to correlate
    first, last = analysis["coverage"]["first"], analysis["coverage"]["last"]
    assert "2019-01-01" <= first and last <= "2019-03-31"
    for b in res["backtests"]:
        s = b["summary"]
        assert b["status"] == "ok" and s["benchmark_return"] is not None
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Rank IC" in report and "news_attention" in report
    rejects = pd.read_csv(run_dir / "news_rejects.csv")
    assert len(rejects) + in_window == len(news)  # every row outside the window is accounted for
