"""Issue 15, names never become paths unchecked: backtest names, sweep points and bundle names."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gptquant.cli import main
from gptquant.errors import GptquantError
from gptquant.names import safe_name

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bad", ["../../x", "..", ".", "a/b", "a\\b", "/etc/passwd", "", "名字", "a b", "x" * 129, None])
def test_safe_name_refuses_anything_that_is_not_a_plain_file_name(bad):
    with pytest.raises(GptquantError, match="cannot be used as a file name"):
        safe_name(bad, "backtest name")


@pytest.mark.parametrize("good", ["topk", "topk_v2.1", "a-b", "A.b_c-1"])
def test_safe_name_keeps_plain_names(good):
    assert safe_name(good) == good


def _tree(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_a_nightly_backtest_named_dot_dot_writes_nothing_outside_the_output_dir(tmp_path, capsys):
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    topk = (REPO / "strategies" / "sentiment_topk.py").as_posix()
    (work / "night.toml").write_text(f'''
root = "{work.as_posix()}"
[news]
sources = ["news.csv"]
[prices]
bars = "prices.csv"
[model]
bundle = "bundle"
[[backtest]]
name = "../../x"
module = "{topk}"
[output]
dir = "runs"
''', encoding="utf-8")
    before = _tree(tmp_path)
    assert main(["nightly", str(work / "night.toml")]) != 0  # before: refused only later, by a missing file
    err = capsys.readouterr().err
    assert "backtest[0].name '../../x' cannot be used as a file name" in err
    assert _tree(tmp_path) == before
    assert not (tmp_path / "deep" / "x").exists() and not os.path.exists(work / "runs")


def test_a_sweep_point_name_cannot_leave_its_folder(tmp_path):
    from gptquant.backtest.sweep import write_row

    with pytest.raises(GptquantError, match="sweep point"):
        write_row(tmp_path / "points", {"name": "../escape", "status": "ok"})
    assert not (tmp_path / "escape.json").exists()


def test_export_refuses_an_unsafe_bundle_name_before_loading_anything(tmp_path, capsys):
    rc = main(["export", str(tmp_path / "no-model-here"), "--out", str(tmp_path / "b"), "--name", "../../x"])
    assert rc != 0 and "--name '../../x' cannot be used as a file name" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
