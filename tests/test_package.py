"""Package-level promises: a light import, --help on every verb, one-line errors, shared text rules."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from gptquant.cli import VERBS, _available
from gptquant.text import limit_ratio, normalize_code, normalize_text, split_codes


def _run(*args, code=None):
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "gptquant.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_import_and_help_do_not_load_torch_or_backtrader():
    code = ("import sys, gptquant, gptquant.cli as c\n"
            "gptquant.load_model; gptquant.normalize_code('600519')\n"
            "for v in ('score', 'model', 'panel', 'backtest'):\n"
            "    c.build_parser(v)\n"
            "heavy = [m for m in ('torch', 'transformers', 'backtrader', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    res = _run(code=code)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("verb", [v for v, (m, _) in VERBS.items() if _available(m)])
def test_every_verb_has_help(verb):
    res = _run(verb, "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: gptquant" in res.stdout


def test_errors_are_one_line_and_nonzero(tmp_path):
    res = _run("score", "--model", str(tmp_path / "nope"), "--news", str(tmp_path / "n.csv"), "--out", str(tmp_path / "o.parquet"))
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln]
    assert len(lines) == 1 and lines[0].startswith("gptquant: error:"), res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("raw,canon", [
    ("600519", "600519.SH"), ("600519.SHA", "600519.SH"), ("SH600519", "600519.SH"), ("sh600519", "600519.SH"),
    ("000001.SZA", "000001.SZ"), ("000001", "000001.SZ"), ("300750", "300750.SZ"), ("430047", "430047.BJ"),
    ("688041.SH", "688041.SH"), (600519, "600519.SH"), ("000300.SH", "000300.SH"),
])
def test_instrument_codes_are_canonical(raw, canon):
    assert normalize_code(raw) == canon


@pytest.mark.parametrize("bad", ["60051", "AAPL", "600519.HK", "SZ600519.SH", None, ""])
def test_bad_codes_name_the_input(bad):
    with pytest.raises(ValueError, match="code"):
        normalize_code(bad)


def test_split_codes_reads_lists_and_separators():
    assert split_codes("600519.SH;000001, sz300750") == ["600519.SH", "000001.SZ", "300750.SZ"]
    assert split_codes("['600519', '000858']") == ["600519.SH", "000858.SZ"]
    assert split_codes(float("nan")) == []


def test_limit_ratio_by_board_and_date():
    assert limit_ratio("600519.SH", "2021-01-04") == 0.10
    assert limit_ratio("300750.SZ", "2020-08-21") == 0.10
    assert limit_ratio("300750.SZ", "2020-08-24") == 0.20
    assert limit_ratio("688041.SH", "2020-01-02") == 0.20
    assert limit_ratio("430047.BJ", "2022-01-04") == 0.30
    assert limit_ratio("600000.SH", "2021-01-04", st=True) == 0.05


def test_normalize_text_keeps_chinese_punctuation():
    assert normalize_text(" <p>公司&amp;股东：净利润增长１０％，</p>\n\n ") == "公司&股东：净利润增长10％，"
    # every Unicode space collapses, every full-width letter/digit folds, as the regex definition says
    from gptquant.text import _FULLWIDTH_ALNUM

    odd = "".join(chr(c) for c in range(0x110000) if chr(c).isspace() or c in _FULLWIDTH_ALNUM)
    for text in (odd, f"甲{odd}乙", odd[::-1] + "丙"):
        assert normalize_text(text) == re.sub(r"\s+", " ", text.translate(_FULLWIDTH_ALNUM)).strip()
    with pytest.raises(TypeError):
        normalize_text(3.0)
