"""Issue 15, bad prices: every impossible bar is refused with its row named; encodings are read per line."""
from __future__ import annotations

import pandas as pd
import pytest

from gptquant.errors import GptquantError
from gptquant.market.prices import load_bars

HEADER = "date,code,open,high,low,close,volume\n"
GOOD = ["2024-03-01,600519,10,11,9,10.5,1000", "2024-03-04,600519,10.5,11,10,10.8,1200",
        "2024-03-05,600519,10.8,11.2,10.6,11,900"]


def _file(tmp_path, bad: str, at: int = 1):
    rows = list(GOOD)
    rows.insert(at, bad)
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("bad, message", [
    ("2024-03-02,600519,10,inf,9,10,100", r"row 2 \(600519.SH 2024-03-02\): high is infinite"),
    ("2024-03-02,600519,10,11,9,10,-inf", r"row 2 \(600519.SH 2024-03-02\): volume is (missing or negative|infinite)"),
    ("2024-03-02,600519,10,11,9,10,1e400", r"row 2 \(600519.SH 2024-03-02\): volume is infinite"),
    ("2024-03-02,600519,nan,11,9,10,100", r"row 2 \(600519.SH 2024-03-02\): open is missing"),
    ("2024-03-02,600519,10,11,9,,100", r"row 2 \(600519.SH 2024-03-02\): close is missing"),
    ("2024-03-02,600519,10,11,-9,10,100", r"row 2 \(600519.SH 2024-03-02\): low is missing or not positive"),
    ("2024-03-02,600519,10,9,11,10,100", r"row 2 \(600519.SH 2024-03-02\): high is below low"),
    ("2024-03-02,600519,10,11,9,12,100", r"row 2 \(600519.SH 2024-03-02\): close is outside \[low, high\]"),
    ("2024-03-02,600519,8,11,9,10,100", r"row 2 \(600519.SH 2024-03-02\): open is outside \[low, high\]"),
    ("2024-03-02,600519,10,11,9,10,１２，５", r"row 2: column 'volume' is not a number: '１２，５'"),
])
def test_impossible_bars_are_refused_naming_the_row(tmp_path, bad, message):
    with pytest.raises(GptquantError, match=message):
        load_bars(_file(tmp_path, bad))


def test_inf_in_an_optional_column_is_refused(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("date,code,open,high,low,close,volume,amount\n2024-03-01,600519,10,11,9,10,5,inf\n")
    with pytest.raises(GptquantError, match=r"row 1 \(600519.SH 2024-03-01\): amount is infinite"):
        load_bars(path)


def test_duplicate_date_and_code_is_refused_with_the_count(tmp_path):
    with pytest.raises(GptquantError, match=r"2 duplicate bars, e.g. 600519.SH on 2024-03-04 \(.*bars.csv row 2, "
                                            r".*bars.csv row 3\)"):
        load_bars(_file(tmp_path, GOOD[1], at=2))
    bars, rejects = load_bars(_file(tmp_path, GOOD[1], at=2), bad_rows="reject")
    assert len(bars) == 2 and rejects["row"].tolist() == [2, 3]
    assert rejects["reason"].tolist() == ["duplicate bar for 600519.SH on 2024-03-04"] * 2


def test_rows_are_named_by_their_place_in_the_file_even_when_filtered(tmp_path):
    path = tmp_path / "bars.csv"
    rows = [r.replace("600519", "000001") for r in GOOD] + ["2024-03-06,600519,10,9,11,10,100"]
    path.write_text(HEADER + "\n".join(rows) + "\n")
    with pytest.raises(GptquantError, match=r"row 4 \(600519.SH 2024-03-06\): high is below low"):
        load_bars(path, instruments=["600519"])  # before: 'row 1', its place after filtering


def test_gb18030_file_with_chinese_after_the_first_64_kb_loads(tmp_path):
    path = tmp_path / "bars.csv"
    filler = "".join(f"2020-01-{1 + i % 28:02d},{600000 + i // 28:06d},10,11,9,10,{i}\n" for i in range(2500))
    assert len(filler) > 65536
    text = "date,code,open,high,low,close,volume,note\n" + filler.replace("\n", ",\n") + "2024-03-01,600519,10,11,9,10,1,停牌复牌\n"
    path.write_bytes(text.encode("gb18030"))
    bars = load_bars(path, instruments=["600519"])  # before: a 64 KB ASCII sample chose UTF-8; the read failed
    assert len(bars) == 1 and bars["instrument"].iloc[0] == "600519.SH"


def test_mixed_encoding_price_file_reads_both(tmp_path):
    path = tmp_path / "bars.csv"
    head = "日期,代码,开盘,最高,最低,收盘,成交量,备注\n".encode()
    path.write_bytes(head + "2024-03-01,600519,10,11,9,10,1,正常\n".encode() + "2024-03-04,600519,10,11,9,10,1,停牌\n".encode("gb18030"))
    with pytest.warns(UserWarning, match="mixed encodings"):
        bars = load_bars(path)
    assert len(bars) == 2
    assert pd.api.types.is_float_dtype(bars["close"])
