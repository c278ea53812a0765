"""`gptquant analyze` end to end on a synthetic panel with a planted signal."""
from __future__ import annotations

import json

from gptquant.cli import main
from conftest import planted


def test_analyze_cli_writes_json_and_prints_a_table(tmp_path, capsys):
    panel, bars = planted()
    panel.to_parquet(tmp_path / "p.parquet")
    bars.assign(high=bars["open"] * 1.01, low=bars["open"] * 0.99, volume=1e6).to_csv(tmp_path / "bars.csv", index=False)
    out = tmp_path / "a.json"
    rc = main(["analyze", "--panel", str(tmp_path / "p.parquet"), "--column", "s", "--prices", str(tmp_path / "bars.csv"),
               "--horizons", "1,5", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["ic_summary"]["rank_ic"]["1D"]["t_stat"] > 5
    printed = capsys.readouterr().out
    assert "RankIC" in printed and "1D" in printed and "5D" in printed


def test_analyze_cli_bad_horizons(tmp_path, capsys):
    panel, bars = planted(n_days=10)
    panel.to_parquet(tmp_path / "p.parquet")
    rc = main(["analyze", "--panel", str(tmp_path / "p.parquet"), "--column", "s", "--prices", str(tmp_path / "none.csv"),
               "--horizons", "1,x", "--out", str(tmp_path / "a.json")])
    assert rc == 2 and "--horizons" in capsys.readouterr().err
