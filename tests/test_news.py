"""read_news: formats, encodings, column rules, and that every bad row is reported, never dropped."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from gptquant.errors import GptquantError
from gptquant.runtime.news import read_news

# synthetic text only (never excerpts of the shared data)
ZH = ["甲公司公告，拟回购股份", "乙公司季度营收同比增长", "丙公司董事会审议通过议案"]


def write_csv(path, rows, encoding="utf-8"):
    pd.DataFrame(rows).to_csv(path, index=False, encoding=encoding)
    return path


def test_csv_title_content_codes_and_ids(tmp_path):
    rows = [
        {"id": "n1", "datetime": "2021-03-01 08:15:00", "title": ZH[0], "content": "详情见公告", "codes": "600519;sz000001", "source": "wire"},
        {"id": "n2", "datetime": "2021-03-01 10:00:00", "title": ZH[1], "content": "", "codes": "300750.SZA", "source": "wire"},
    ]
    arts, rej = read_news(write_csv(tmp_path / "n.csv", rows))
    assert rej.empty
    assert list(arts.columns) == ["article_id", "row", "datetime", "text", "instruments", "source"]
    assert arts["article_id"].tolist() == ["n1", "n2"]
    assert arts["row"].tolist() == [1, 2]
    assert arts["instruments"].tolist() == [["600519.SH", "000001.SZ"], ["300750.SZ"]]
    assert arts["text"].iloc[0].startswith(ZH[0]) and "详情见公告" in arts["text"].iloc[0]
    assert arts["text"].iloc[1] == ZH[1]
    assert arts["datetime"].iloc[0] == pd.Timestamp("2021-03-01 08:15:00")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
def test_bom_and_gb18030_csv_decode(tmp_path, encoding):
    rows = [{"datetime": "2021-03-01 09:00", "text": t, "instrument": "600000"} for t in ZH]
    arts, rej = read_news(write_csv(tmp_path / "n.csv", rows, encoding=encoding))
    assert rej.empty
    assert arts["text"].tolist() == ZH
    assert arts["article_id"].tolist() == [1, 2, 3]


def test_undecodable_row_is_rejected_naming_line_and_offset(tmp_path):
    path = tmp_path / "bad.csv"
    good = "datetime,text,instrument\n2021-03-01,abc,600000\n".encode()
    path.write_bytes(good + b"2021-03-02,\xff\xff\xff,600000\n")
    arts, rej = read_news(path)  # the bad row alone is rejected, with its line and byte offset
    assert arts["text"].tolist() == ["abc"]
    assert rej["row"].tolist() == [2]
    assert f"line 3: neither UTF-8 (bad byte at offset {len(good) + 11})" in rej["reason"].iloc[0]


def test_each_bad_row_kind_is_rejected_with_its_row_number(tmp_path):
    lines = [
        {"datetime": "2021-03-01 09:00", "text": ZH[0], "codes": ["600519", "000001"]},  # 1 ok (list cell)
        {"datetime": "2021-03-01 09:00", "text": "   ", "codes": "600519"},            # 2 whitespace text
        {"datetime": "2021-03-01 09:00", "text": 12345, "codes": "600519"},            # 3 non-string text
        {"datetime": "31/31/2021", "text": ZH[1], "codes": "600519"},                  # 4 bad datetime
        {"datetime": "2021-03-01 09:00", "text": ZH[2], "codes": "60051X"},            # 5 bad code
        "not json at all",                                                             # 6 bad JSON line
        {"datetime": "2021-03-01 09:00", "codes": "600519"},                           # 7 missing text
        {"datetime": "", "text": ZH[0], "codes": ""},                                   # 8 no datetime, no code
        {"datetime": "2021-03-01T01:00:00Z", "text": ZH[1], "codes": 1},               # 9 ok: aware time, int code
    ]
    path = tmp_path / "n.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    arts, rej = read_news(path)
    assert arts["row"].tolist() == [1, 9]
    assert arts["instruments"].tolist() == [["600519.SH", "000001.SZ"], ["000001.SZ"]]
    assert arts["datetime"].iloc[1] == pd.Timestamp("2021-03-01 09:00:00")  # UTC 01:00 -> Shanghai 09:00
    reasons = dict(zip(rej["row"], rej["reason"]))
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert reasons[2] == "empty text"
    assert "not a string" in reasons[3]
    assert "unparseable datetime" in reasons[4]
    assert "60051X" in reasons[5]
    assert "invalid JSON" in reasons[6]
    assert reasons[7] == "missing text"
    assert "missing datetime" in reasons[8] and "no instrument code" in reasons[8]


def test_missing_required_columns_name_file_and_column(tmp_path):
    path = write_csv(tmp_path / "n.csv", [{"datetime": "2021-03-01", "body": "x", "codes": "600000"}])
    with pytest.raises(GptquantError, match=r"n\.csv.*'text'"):
        read_news(path)
    path = write_csv(tmp_path / "m.csv", [{"text": "x", "codes": "600000"}])
    with pytest.raises(GptquantError, match=r"m\.csv.*'datetime'"):
        read_news(path)
    path = write_csv(tmp_path / "k.csv", [{"text": "x", "datetime": "2021-03-01"}])
    with pytest.raises(GptquantError, match=r"k\.csv.*'instrument'"):
        read_news(path)
    with pytest.raises(GptquantError, match=r"'body2'"):
        read_news(tmp_path / "n.csv", text_column="body2")


def test_text_only_file_when_meta_not_required(tmp_path):
    path = write_csv(tmp_path / "t.csv", [{"text": ZH[0]}, {"text": ""}, {"text": ZH[2]}])
    arts, rej = read_news(path, require_meta=False)
    assert arts["row"].tolist() == [1, 3]
    assert rej[["row", "article_id"]].values.tolist() == [[2, 2]]
    assert arts["datetime"].isna().all()
    with pytest.raises(GptquantError):
        read_news(path)


def test_duplicate_ids_fall_back_to_row_numbers_with_a_warning(tmp_path):
    rows = [{"id": "x", "datetime": "2021-03-01", "text": t, "codes": "600000"} for t in ZH]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arts, _ = read_news(write_csv(tmp_path / "n.csv", rows))
    assert arts["article_id"].tolist() == [1, 2, 3]
    assert any("not unique" in str(w.message) for w in caught)


def test_parquet_and_dataframe_inputs(tmp_path):
    df = pd.DataFrame({
        "datetime": pd.to_datetime(["2021-03-01 09:00", "2021-03-02 09:00"]).tz_localize("Asia/Shanghai"),
        "text": [ZH[0], None],
        "instrument": [["600519", "000858"], ["600000"]],
    })
    df.to_parquet(tmp_path / "n.parquet")
    for src in (tmp_path / "n.parquet", df):
        arts, rej = read_news(src)
        assert arts["instruments"].tolist() == [["600519.SH", "000858.SZ"]]
        assert arts["datetime"].iloc[0] == pd.Timestamp("2021-03-01 09:00")
        assert rej["row"].tolist() == [2] and rej["reason"].tolist() == ["missing text"]


def test_code_and_exchange_columns(tmp_path):
    path = write_csv(tmp_path / "n.csv", [{"datetime": "2021-03-01", "text": ZH[0], "code": "000300", "exchange": "SH"}])
    arts, _ = read_news(path)
    assert arts["instruments"].tolist() == [["000300.SH"]]


def test_shared_astock_news_rows_all_accounted_for(shared_data):
    path = shared_data / "astock_news" / "astock_news.csv"
    arts, rej = read_news(path)
    n_rows = len(pd.read_csv(path, usecols=["code"], dtype=str))
    assert len(arts) + len(rej) == n_rows
    assert len(arts) > 0.99 * n_rows
    assert all(len(c) == 1 and c[0][-3:] in (".SH", ".SZ") for c in arts["instruments"])


def test_reading_leaves_the_garbage_collector_as_it_was(tmp_path):
    import gc

    path = write_csv(tmp_path / "n.csv", [{"datetime": "2021-03-01 09:00", "text": ZH[0], "instrument": "600000"}])
    assert gc.isenabled()
    read_news(path)
    assert gc.isenabled()
    with pytest.raises(GptquantError):
        read_news(tmp_path / "missing.csv")
    assert gc.isenabled()
    gc.disable()
    try:
        read_news(path)
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()
