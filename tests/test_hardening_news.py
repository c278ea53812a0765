"""Issue 15, bad news input: one clear error or a rejects row with its reason; never a shifted column,
never mojibake, never a traceback."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest

from gptquant.cli import main
from gptquant.errors import GptquantError
from gptquant.runtime.news import iter_news, read_news

HEAD = "datetime,text,instrument\n"
UTF8_ROWS = ["贵州茅台发布年报，净利润增长", "平安银行获批设立理财子公司", "宁德时代签订长期供货协议"]


def test_one_gb18030_row_in_a_utf8_file_keeps_every_utf8_row_intact(tmp_path):
    path = tmp_path / "mixed.csv"
    odd = "招商银行董事会换届"
    data = HEAD.encode() + b"".join(f"2024-03-0{i + 1} 08:00,{t},600519\n".encode() for i, t in enumerate(UTF8_ROWS[:2]))
    data += f"2024-03-05 08:00,{odd},600036\n".encode("gb18030")  # line 4
    data += f"2024-03-06 08:00,{UTF8_ROWS[2]},300750\n".encode()
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arts, rej = read_news(path)
    assert rej.empty
    assert arts["text"].tolist() == [*UTF8_ROWS[:2], odd, UTF8_ROWS[2]]  # before: all four decoded as GB18030
    assert any("GB18030" in str(w.message) and "line 4" in str(w.message) for w in caught)
    streamed = pd.concat([a for a, _ in iter_news(path, chunk_rows=2)], ignore_index=True)
    assert streamed["text"].tolist() == arts["text"].tolist()


def test_an_undecodable_row_is_rejected_by_line_and_the_rest_is_read(tmp_path):
    path = tmp_path / "bad.csv"
    data = HEAD.encode() + f"2024-03-01,{UTF8_ROWS[0]},600519\n".encode() + b"2024-03-02,\x81\xff\xfe,600519\n"
    path.write_bytes(data + f"2024-03-03,{UTF8_ROWS[1]},000001\n".encode())
    arts, rej = read_news(path)
    assert arts["text"].tolist() == [UTF8_ROWS[0], UTF8_ROWS[1]] and arts["row"].tolist() == [1, 3]
    assert rej["row"].tolist() == [2] and "line 3" in rej["reason"].iloc[0]


def test_a_ragged_first_row_does_not_shift_columns(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text(HEAD + "2024-03-01 08:00,甲公司公告,600519,extra\n"
                    + f"2024-03-04 08:00,{UTF8_ROWS[1]},000001\n", encoding="utf-8")
    arts, rej = read_news(path)  # before: pandas made column 1 the index: text = the code, codes = 'extra'
    assert arts["text"].tolist() == [UTF8_ROWS[1]] and arts["instruments"].tolist() == [["000001.SZ"]]
    assert rej["row"].tolist() == [1] and "4 fields, the header has 3" in rej["reason"].iloc[0]


def test_a_row_with_extra_fields_costs_only_itself(tmp_path):
    path = tmp_path / "extra.csv"
    rows = [f"2024-03-0{i + 1} 08:00,{t},600519" for i, t in enumerate(UTF8_ROWS)]
    rows.insert(1, "2024-03-02 08:00,多一列,600519,oops,more")
    rows.append("2024-03-09 08:00,少一列")
    path.write_text(HEAD + "\n".join(rows) + "\n", encoding="utf-8")
    arts, rej = read_news(path)  # before: 'malformed CSV' for the whole file
    assert arts["text"].tolist() == UTF8_ROWS and arts["row"].tolist() == [1, 3, 4]
    assert dict(zip(rej["row"], rej["reason"])) == {2: "line 3: 5 fields, the header has 3",
                                                    5: "line 6: 2 fields, the header has 3"}


def test_an_unclosed_quote_loses_one_line_not_the_rest_of_the_file(tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text(HEAD + '2024-03-01 08:00,"半个引号,600519\n'
                    + "".join(f"2024-03-0{i + 2} 08:00,{t},600519\n" for i, t in enumerate(UTF8_ROWS)), encoding="utf-8")
    arts, rej = read_news(path)
    assert arts["text"].tolist() == UTF8_ROWS and arts["row"].tolist() == [2, 3, 4]
    assert rej["row"].tolist() == [1] and "quote" in rej["reason"].iloc[0]


def test_quoted_newlines_stay_one_row(tmp_path):
    path = tmp_path / "nl.csv"
    path.write_text(HEAD + '2024-03-01 08:00,"第一行\n第二行",600519\n2024-03-02 08:00,下一条,600519\n', encoding="utf-8")
    arts, rej = read_news(path)
    assert rej.empty and arts["text"].tolist() == ["第一行\n第二行", "下一条"] and arts["row"].tolist() == [1, 2]


def test_ambiguous_dates_are_refused_unless_the_order_is_configured(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text(HEAD + "03/04/2024 08:00,甲,600519\n31/03/2024 08:00,乙,600519\n2024-03-05 08:00,丙,600519\n",
                    encoding="utf-8")
    arts, rej = read_news(path)  # before: 03/04 silently read as 4 March
    assert arts["text"].tolist() == ["乙", "丙"] and arts["datetime"].iloc[0] == pd.Timestamp("2024-03-31 08:00")
    reason = rej.set_index("row")["reason"][1]
    assert "ambiguous date '03/04/2024 08:00'" in reason and "YYYY-MM-DD" in reason and "date_order" in reason
    dmy, _ = read_news(path, date_order="dmy")
    assert dmy["datetime"].tolist()[:2] == [pd.Timestamp("2024-04-03 08:00"), pd.Timestamp("2024-03-31 08:00")]
    mdy, mdy_rej = read_news(path, date_order="mdy")
    assert mdy["datetime"].tolist()[0] == pd.Timestamp("2024-03-04 08:00")
    assert mdy_rej["row"].tolist() == [2] and "month 31" in mdy_rej["reason"].iloc[0]
    with pytest.raises(GptquantError, match="date_order"):
        read_news(path, date_order="ymd")


def test_full_width_codes_normalise_to_the_same_instrument(tmp_path):
    path = tmp_path / "fw.csv"
    path.write_text(HEAD + "2024-03-01 08:00,甲,６００５１９\n2024-03-01 08:00,乙,６００５１９．ＳＨ\n"
                    "2024-03-01 08:00,丙,ｓｈ６００５１９\n2024-03-01 08:00,丁,٦٠٠٥١٩\n", encoding="utf-8")
    arts, rej = read_news(path)  # before: '６００５１９' became '６００５１９.SZ', a code no price file has
    assert arts["instruments"].tolist() == [["600519.SH"]] * 3
    assert rej["row"].tolist() == [4] and "not an A-share instrument code" in rej["reason"].iloc[0]


def _panel(tmp_path, rows: str, *extra) -> int:
    """`gptquant panel` over a news file of `rows` (one sentiment per row) into tmp_path/panel.parquet."""
    (tmp_path / "n.csv").write_text(HEAD + rows, encoding="utf-8")
    n = rows.count("\n")
    (tmp_path / "f.csv").write_text("article_id,sentiment\n" + "".join(f"{i},0.5\n" for i in range(1, n + 1)))
    return main(["panel", "--features", str(tmp_path / "f.csv"), "--news", str(tmp_path / "n.csv"),
                 "--out", str(tmp_path / "panel.parquet"), *extra])


def test_all_rows_rejected_is_one_error_naming_the_rejects_file(tmp_path, capsys):
    assert _panel(tmp_path, "2024-03-01,甲,XXXX\n03/04/2024,乙,600519\n") != 0
    err = capsys.readouterr().err
    assert "AttributeError" not in err and "no news row reached the panel" in err and "panel.rejects.csv" in err
    assert len(pd.read_csv(tmp_path / "panel.rejects.csv")) == 2 and not (tmp_path / "panel.parquet").exists()


def test_a_stale_panel_rejects_file_is_removed_when_a_run_rejects_nothing(tmp_path):
    (tmp_path / "panel.rejects.csv").write_text("row,article_id,reason\n7,7,from an earlier run\n")
    assert _panel(tmp_path, "2024-03-01 08:00,甲,600519\n") == 0
    assert (tmp_path / "panel.parquet").exists() and not (tmp_path / "panel.rejects.csv").exists()


def test_label_market_with_every_row_rejected_is_one_error_naming_the_rejects_file(tmp_path, capsys):
    (tmp_path / "news.csv").write_text(HEAD + "2023-03-02 08:00,公告,688999\n03/04/2023,公告,600001\n", encoding="utf-8")
    days = pd.bdate_range("2023-03-01", "2023-03-10")
    bars = pd.DataFrame({"datetime": days, "code": "600001", "open": 10.0, "high": 10.5, "low": 9.5, "close": 10.0,
                         "volume": 1e6})
    bars.to_csv(tmp_path / "bars.csv", index=False)
    bars.assign(code="000300").to_csv(tmp_path / "csi300.csv", index=False)
    rc = main(["label", "market", "--news", str(tmp_path / "news.csv"), "--prices", str(tmp_path / "bars.csv"),
               "--benchmark", str(tmp_path / "csi300.csv"), "--out", str(tmp_path / "labels.csv")])
    assert rc != 0 and "no row could be labelled (2 rejected, see" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "labels.rejects.csv")) == 2 and not (tmp_path / "labels.csv").exists()


def test_panel_cli_takes_the_date_order(tmp_path, capsys):
    assert _panel(tmp_path, "03/04/2024 08:00,甲,600519\n") != 0
    assert "ambiguous date" in pd.read_csv(tmp_path / "panel.rejects.csv")["reason"].iloc[0]
    assert _panel(tmp_path, "03/04/2024 08:00,甲,600519\n", "--date-order", "dmy") == 0
    assert pd.read_parquet(tmp_path / "panel.parquet").index.get_level_values("datetime").tolist() == [pd.Timestamp("2024-04-03")]
    assert not (tmp_path / "panel.rejects.csv").exists()


def test_nightly_with_every_news_row_rejected_names_the_rejects_file(tmp_path, capsys):
    (tmp_path / "news.csv").write_text(HEAD + "03/04/2024,甲,600519\n2024-03-05,乙,XXXX\n", encoding="utf-8")
    (tmp_path / "prices.csv").write_text("date,code,open,high,low,close,volume\n2024-03-01,600519,10,11,9,10,1\n")
    (tmp_path / "night.toml").write_text(f'root = "{tmp_path.as_posix()}"\n[news]\nsources = ["news.csv"]\n'
                                         '[prices]\nbars = "prices.csv"\n[model]\nbundle = "bundle"\n'
                                         '[output]\ndir = "runs"\n', encoding="utf-8")
    assert main(["nightly", str(tmp_path / "night.toml")]) != 0
    err = capsys.readouterr().err
    rejects = next((tmp_path / "runs").rglob("news_rejects.csv"))
    assert f"(2 rows rejected, see {rejects})" in err and len(pd.read_csv(rejects)) == 2
