"""`gptquant panel` end to end on small synthetic files."""
from __future__ import annotations

import pandas as pd

from gptquant.cli import main


def write_inputs(tmp_path):
    news = pd.DataFrame({
        "id": ["a1", "a2", "a3", "a4"],
        "datetime": ["2024-01-02 08:00", "2024-01-02 09:31", "2024-01-06 12:00", "2024-01-03 08:00"],
        "text": ["甲公司业绩预增。", "乙公司收到罚单。", "甲公司中标大单。", "丙公司公告。"],
        "instrument": ["600519", "000001.SZ;600519.SH", "sh600519", "000002"],
    })
    news.to_csv(tmp_path / "news.csv", index=False)
    feats = pd.DataFrame({"article_id": ["a1", "a2", "a3"], "sentiment": [0.5, -0.5, 1.0], "nll_mean": [3.0, 4.0, 5.0]})
    feats.to_parquet(tmp_path / "f.parquet")
    return tmp_path / "news.csv", tmp_path / "f.parquet"


def test_panel_cli_writes_the_panel_and_the_rejects(tmp_path, capsys):
    news, feats = write_inputs(tmp_path)
    out = tmp_path / "p.parquet"
    rc = main(["panel", "--features", str(feats), "--news", str(news), "--out", str(out), "--halflife", "2"])
    assert rc == 0
    p = pd.read_parquet(out)
    assert p.index.names == ["datetime", "instrument"]
    assert p.loc[(pd.Timestamp("2024-01-03"), "600519.SH"), "sentiment_mean"] == -0.5
    assert p.loc[(pd.Timestamp("2024-01-08"), "600519.SH"), "sentiment_ewm"] == 0.5 * 0.5**2 - 0.5 * 0.5**1.5 + 1.0
    rejects = pd.read_csv(tmp_path / "p.rejects.csv")
    assert rejects["article_id"].tolist() == ["a4"] and "no features" in rejects["reason"].iloc[0]
    assert rejects["row"].tolist() == [4]
    printed = capsys.readouterr().out
    assert "4 in, 3 used, 1 rejected" in printed


def test_panel_cli_qlib_score(tmp_path):
    news, feats = write_inputs(tmp_path)
    out = tmp_path / "q.parquet"
    assert main(["panel", "--features", str(feats), "--news", str(news), "--out", str(out), "--qlib",
                 "--score-column", "sentiment_mean"]) == 0
    q = pd.read_parquet(out)
    assert list(q.columns) == ["score"] and q.index.names == ["datetime", "instrument"]
    assert q.loc[(pd.Timestamp("2024-01-02"), "SH600519"), "score"] == 0.5


def test_panel_cli_errors_are_one_line(tmp_path, capsys):
    news, feats = write_inputs(tmp_path)
    rc = main(["panel", "--features", str(feats), "--news", str(news), "--out", str(tmp_path / "x.parquet"), "--qlib",
               "--score-column", "sentiment_median"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no column 'sentiment_median'" in err and err.count("\n") == 1
    assert not (tmp_path / "x.parquet").exists()
