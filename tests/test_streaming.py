"""Streaming input: news files are read chunk by chunk, with the same rows, ids and rejects as a whole read."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest

from gptquant.cli import main
from gptquant.runtime import news as news_mod
from gptquant.runtime.news import iter_news, read_news


def _table(n=250, ids=True):
    df = pd.DataFrame({"datetime": ["2020-01-02 08:00"] * n, "code": ["600519"] * n,
                       "text": [f"公司公告第{i}号，拟回购股份。" if i % 37 else "  " for i in range(n)]})
    if ids:
        df.insert(0, "id", [f"a{i}" for i in range(n)])
    df.loc[5, "datetime"] = "not a date"
    return df


def _concat(chunks):
    chunks = list(chunks)
    return (pd.concat([a for a, _ in chunks], ignore_index=True),
            pd.concat([r for _, r in chunks], ignore_index=True), len(chunks))


@pytest.mark.parametrize("fmt", ["csv-gb18030", "csv-utf8", "parquet"])
def test_chunks_equal_a_whole_read(tmp_path, fmt):
    df = _table()
    path = tmp_path / ("n.parquet" if fmt == "parquet" else "n.csv")
    if fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False, encoding="gb18030" if fmt == "csv-gb18030" else "utf-8")
    whole_a, whole_r = read_news(path)
    a, r, n_chunks = _concat(iter_news(path, chunk_rows=64))
    assert n_chunks == 4
    pd.testing.assert_frame_equal(a, whole_a)
    pd.testing.assert_frame_equal(r, whole_r)
    assert list(r["row"]) == [1, 6, 38, 75, 112, 149, 186, 223], "global 1-based data rows, not per chunk"
    assert a["article_id"].iloc[0] == "a1"  # row 1 (i = 0) has a blank text


def test_an_id_repeated_across_chunks_falls_back_to_row_numbers(tmp_path):
    df = _table(130)
    df.loc[120, "id"] = "a3"  # the duplicate sits in another chunk than its twin
    path = tmp_path / "n.csv"
    df.to_csv(path, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, r, _ = _concat(iter_news(path, chunk_rows=50))
    assert any("not unique" in str(w.message) for w in caught)
    assert a["article_id"].tolist() == a["row"].tolist()
    pd.testing.assert_frame_equal(a, read_news(path)[0])


def test_score_reads_the_file_in_chunks_and_matches_one_chunk(tiny_bundle, tmp_path, monkeypatch):
    path = tmp_path / "news.csv"
    _table(300, ids=False).to_csv(path, index=False)
    seen = []
    real = news_mod.read_news

    def spy(source, **kw):
        seen.append(len(source) if isinstance(source, pd.DataFrame) else "whole file")
        return real(source, **kw)

    monkeypatch.setattr(news_mod, "read_news", spy)
    small, big = tmp_path / "small.parquet", tmp_path / "big.parquet"
    assert main(["score", "--model", str(tiny_bundle), "--news", str(path), "--out", str(small),
                 "--part-size", "16", "--chunk-parts", "4"]) == 0
    assert seen and "whole file" not in seen and max(seen) <= 64, seen
    assert main(["score", "--model", str(tiny_bundle), "--news", str(path), "--out", str(big)]) == 0
    a, b = pd.read_parquet(small), pd.read_parquet(big)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 300 - 9 - 1  # 9 blank texts ('  ' every 37th row) and 1 bad datetime are rejected
    rej = pd.read_csv(f"{small}.rejects.csv")
    assert len(rej) == 10
    assert rej["row"].max() > 64, "rejects keep their global row numbers"
