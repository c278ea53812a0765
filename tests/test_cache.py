"""The SQLite score cache: hits skip the scorer, concurrent writers, a killed run keeps finished batches."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from gptquant.errors import GptquantError
from gptquant.features.cache import ScoreCache, text_key
from gptquant.features.pipeline import score_with_cache


class CountingScorer:
    """Deterministic fake features from the text; counts what it is asked to score."""

    def __init__(self):
        self.seen = []

    def score(self, texts):
        self.seen.extend(texts)
        return pd.DataFrame({
            "n_tokens": [len(t) for t in texts],
            "truncated": [len(t) > 12 for t in texts],
            "sentiment": [(sum(map(ord, t)) % 200) / 100 - 1 for t in texts],
        })


def texts(n, prefix="公司公告"):
    return [f"{prefix}第{i}号，利润增长{i % 7}成。" for i in range(n)]


def test_hits_skip_the_scorer_and_rows_come_back_in_order(tmp_path):
    scorer = CountingScorer()
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        first = score_with_cache(scorer, texts(30), cache, "bundleA", batch_size=8, progress=False)
        assert len(scorer.seen) == 30 and len(cache) == 30
        # same texts modulo whitespace/markup plus 5 new ones: only the new ones are scored
        again = [f"  {t} " for t in texts(30)] + texts(5, prefix="新闻")
        scorer.seen.clear()
        second = score_with_cache(scorer, again, cache, "bundleA", batch_size=8, progress=False)
        assert scorer.seen == texts(5, prefix="新闻")
        pd.testing.assert_frame_equal(second.iloc[:30], first)
        assert list(second.dtypes) == list(first.dtypes) == ["int64", "bool", "float64"]
        assert second["sentiment"].iloc[32] == CountingScorer().score([texts(5, prefix="新闻")[2]])["sentiment"].iloc[0]
        # a different bundle misses everything
        scorer.seen.clear()
        score_with_cache(scorer, texts(3), cache, "bundleB", progress=False)
        assert len(scorer.seen) == 3


def test_rows_that_pass_their_checksum_but_are_not_feature_objects_are_rescored(tmp_path):
    from gptquant.features.cache import row_checksum

    keys = [text_key(t) for t in texts(6)]
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        cache.put_many("b", keys, [{"sentiment": i / 10} for i in range(6)])
        for k, blob in ((keys[1], "[1, 2]"), (keys[4], '"text"')):  # valid JSON, not an object
            cache._db.execute("UPDATE scores SET features = ?, checksum = ? WHERE text_hash = ?",
                              (blob, row_checksum("b", k, blob), k))
        hits = cache.get_many("b", keys)
        assert {k: v["sentiment"] for k, v in hits.items()} == {keys[i]: i / 10 for i in (0, 2, 3, 5)}
        assert cache.corrupt_rows == 2


def test_duplicates_in_one_call_are_scored_once(tmp_path):
    scorer = CountingScorer()
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        out = score_with_cache(scorer, ["甲公司公告", "乙公司公告", "甲公司公告"], cache, "b", progress=False)
    assert scorer.seen == ["甲公司公告", "乙公司公告"]
    assert out["n_tokens"].tolist() == [5, 5, 5]
    assert out.iloc[0].equals(out.iloc[2])


def test_bad_text_is_named(tmp_path):
    with ScoreCache(tmp_path / "c.sqlite") as cache, pytest.raises(GptquantError, match="text #1"):
        score_with_cache(CountingScorer(), ["ok", None], cache, "b", progress=False)


WRITER = textwrap.dedent("""
    import sys, time
    import pandas as pd
    from gptquant.features.cache import ScoreCache
    from gptquant.features.pipeline import score_with_cache
    path, tag, n, hang_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    class Scorer:
        calls = 0
        def score(self, texts):
            Scorer.calls += 1
            if Scorer.calls > hang_after:
                print("hanging", flush=True)
                time.sleep(600)
            return pd.DataFrame({"n_tokens": [len(t) for t in texts], "sentiment": [float(t.split('#')[1]) for t in texts]})
    cache = ScoreCache(path)
    texts = [f"text #{i}" for i in range(n)]
    out = score_with_cache(Scorer(), texts, cache, tag, batch_size=25, progress=False)
    assert out["sentiment"].tolist() == list(range(n)), "wrong rows"
    print("done", flush=True)
""")


def spawn(tmp_path, *args):
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_writing_concurrently_do_not_corrupt(tmp_path):
    db = tmp_path / "c.sqlite"
    ScoreCache(db).close()
    # overlapping texts, same bundle and different bundles, at the same time
    procs = [spawn(tmp_path, db, "b1", 600, 10**6), spawn(tmp_path, db, "b1", 600, 10**6), spawn(tmp_path, db, "b2", 400, 10**6)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "done"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM scores WHERE bundle_hash='b1'").fetchone()[0] == 600
    assert con.execute("SELECT COUNT(*) FROM scores WHERE bundle_hash='b2'").fetchone()[0] == 400
    con.close()
    with ScoreCache(db) as cache:
        hits = cache.get_many("b1", [text_key(f"text #{i}") for i in range(600)])
    assert [hits[text_key(f"text #{i}")]["sentiment"] for i in range(600)] == list(range(600))


def test_a_killed_run_keeps_every_finished_batch(tmp_path):
    db = tmp_path / "c.sqlite"
    p = spawn(tmp_path, db, "b", 200, 3)  # scores 3 batches of 25, then hangs inside the 4th
    line = p.stdout.readline()
    assert line.strip() == "hanging", p.stderr.read()
    p.kill()
    p.wait(timeout=30)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    scorer = CountingScorer()
    with ScoreCache(db) as cache:
        assert len(cache) == 75
        score_with_cache(scorer, [f"text #{i}" for i in range(200)], cache, "b", progress=False)
    assert scorer.seen == [f"text #{i}" for i in range(75, 200)]


def test_default_path_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTQUANT_SCORE_CACHE", str(tmp_path / "mine.sqlite"))
    with ScoreCache() as cache:
        assert cache.path == tmp_path / "mine.sqlite"
    monkeypatch.delenv("GPTQUANT_SCORE_CACHE")
    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path / "base"))
    with ScoreCache() as cache:
        assert cache.path == tmp_path / "base" / "scores.sqlite" and cache.path.exists()


def test_a_file_that_is_not_a_cache_is_an_error(tmp_path):
    (tmp_path / "x.sqlite").write_bytes(b"not a database at all, just some bytes" * 100)
    with pytest.raises(GptquantError, match="x.sqlite"):
        ScoreCache(tmp_path / "x.sqlite")
