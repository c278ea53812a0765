"""`gptquant score`: output contract, rejects file, atomic output, and resuming after a crash."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gptquant.cli import main
from gptquant.runtime import scorer as scorer_mod
from conftest import words


@pytest.fixture
def news(tmp_path):
    rng = np.random.default_rng(5)
    rows = [{"id": f"a{i:02d}", "datetime": "2021-03-01 09:00", "text": words(rng, int(rng.integers(1, 25))), "codes": "600519"}
            for i in range(23)]
    rows[4]["text"] = " "
    rows[17]["datetime"] = "2021-02-30 10:00"
    path = tmp_path / "news.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def score(synth_bundle, news, out, *extra):
    return main(["score", "--model", str(synth_bundle), "--news", str(news), "--out", str(out), "--batch-size", "3", *extra])


def test_score_writes_features_and_rejects(synth_bundle, news, tmp_path, capsys):
    out = tmp_path / "f.parquet"
    assert score(synth_bundle, news, out) == 0
    df = pd.read_parquet(out)
    assert df.columns[0] == "article_id" and len(df) == 21
    assert "a04" not in set(df["article_id"]) and df["article_id"].iloc[0] == "a00"
    assert {"n_tokens", "truncated", "nll_mean", "ppl", "rank_top10", "fast_detect", "sentiment"} <= set(df.columns)
    rejects = pd.read_csv(f"{out}.rejects.csv")
    assert rejects["row"].tolist() == [5, 18] and rejects["article_id"].tolist() == ["a04", "a17"]
    line = capsys.readouterr().out.strip()
    assert "21 articles" in line and "tokens/s" in line and "2 rows rejected" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet", "f.parquet.rejects.csv", "news.csv"]


def test_crash_keeps_old_output_and_rerun_resumes_finished_parts(synth_bundle, news, tmp_path, monkeypatch):
    out = tmp_path / "f.parquet"
    out.write_bytes(b"previous result")
    real = scorer_mod.Scorer.score_batches
    seen = []

    def crashing(self, texts, chunk_size=None):
        seen.append(len(texts))
        if len(seen) == 2:
            raise RuntimeError("simulated crash")
        yield from real(self, texts, chunk_size)

    monkeypatch.setattr(scorer_mod.Scorer, "score_batches", crashing)
    assert score(synth_bundle, news, out, "--part-size", "8") != 0
    assert out.read_bytes() == b"previous result"  # never half-written
    parts = sorted(p.name for p in (tmp_path / "f.parquet.parts").glob("part-*.parquet"))
    assert parts == ["part-000000000.parquet"]

    seen.clear()

    def counting(self, texts, chunk_size=None):
        seen.append(len(texts))
        yield from real(self, texts, chunk_size)

    monkeypatch.setattr(scorer_mod.Scorer, "score_batches", counting)
    assert score(synth_bundle, news, out, "--part-size", "8") == 0
    assert seen == [8, 5]  # the finished first part was not scored again
    resumed = pd.read_parquet(out)
    monkeypatch.undo()
    clean = tmp_path / "clean.parquet"
    assert score(synth_bundle, news, clean) == 0
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(clean), check_exact=False, rtol=1e-6)
    assert not (tmp_path / "f.parquet.parts").exists()


def test_parts_from_a_different_news_file_are_not_reused(synth_bundle, news, tmp_path, monkeypatch):
    out = tmp_path / "f.parquet"
    parts = tmp_path / "f.parquet.parts"
    parts.mkdir()
    (parts / "parts.json").write_text('{"key": "other"}')
    pd.DataFrame({"article_id": ["zz"], "n_tokens": [1]}).to_parquet(parts / "part-000000000.parquet")
    assert score(synth_bundle, news, out, "--part-size", "8") == 0
    assert "zz" not in set(pd.read_parquet(out)["article_id"])


def test_score_errors_are_one_line(synth_bundle, tmp_path, capsys):
    bad = tmp_path / "n.csv"
    pd.DataFrame({"body": ["w1"]}).to_csv(bad, index=False)
    assert score(synth_bundle, bad, tmp_path / "f.parquet") == 2
    err = capsys.readouterr().err
    assert "n.csv" in err and "'text'" in err and err.count("\n") == 1
    assert score(synth_bundle, bad, tmp_path / "f.txt") == 2
