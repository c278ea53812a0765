"""The one scoring pipeline (gptquant.features.pipeline): the cache filters before any engine, for the
`score` verb, Python users and the nightly alike."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import demo_texts
from gptquant.cli import main
from gptquant.features.cache import ScoreCache
from gptquant.features.pipeline import Counts, score_articles

pytest.importorskip("torch")  # tiny_bundle is exported by the project's own torch code


@pytest.fixture(scope="module")
def articles():
    texts = demo_texts(40, seed=3)
    texts[7] = texts[3]  # a repeated text is scored once
    ids = [f"a{v:03d}" for v in np.random.default_rng(2).permutation(400)[:40]]
    return pd.DataFrame({"article_id": ids, "text": texts})


def test_score_verb_with_a_cache_scores_only_new_texts(tiny_bundle, articles, tmp_path, capsys):
    news, cache = tmp_path / "news.csv", tmp_path / "scores.sqlite"
    articles.rename(columns={"article_id": "id"}).to_csv(news, index=False)
    first, second, plain = (tmp_path / f"{n}.parquet" for n in ("first", "second", "plain"))
    args = ["score", "--model", str(tiny_bundle), "--news", str(news), "--part-size", "8", "--cache", str(cache)]
    assert main([*args, "--out", str(first)]) == 0
    capsys.readouterr()
    with ScoreCache(cache) as c:
        assert len(c) == articles["text"].nunique() < 40  # a repeated text is stored once
    assert main([*args, "--out", str(second), "--workers", "2"]) == 0
    assert "40 from the cache or repeated: nothing new to score" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(second), pd.read_parquet(first))  # cached rows are exact, dtypes kept
    assert main(["score", "--model", str(tiny_bundle), "--news", str(news), "--part-size", "8", "--out", str(plain)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(plain), pd.read_parquet(first))


@pytest.mark.parametrize("workers", [1, 2])
def test_score_articles_sends_only_cache_misses_to_the_engine(tiny_bundle, articles, tmp_path, workers):
    expected = score_articles(articles, tiny_bundle, part_size=6)
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        warm = Counts()
        score_articles(articles.iloc[:15], tiny_bundle, part_size=6, cache=cache, counts=warm)
        known = articles["text"].iloc[:15].nunique()
        assert (warm.scored, warm.cached) == (known, 15 - known)  # row 7 repeats row 3
        counts = Counts()
        got = score_articles(articles, tiny_bundle, part_size=6, cache=cache, counts=counts, workers=workers)
    new = set(articles["text"].iloc[15:]) - set(articles["text"].iloc[:15])
    assert counts.articles == 40 and counts.scored >= len(new) and counts.scored + counts.cached == 40
    assert counts.scored <= 25 and counts.cached >= 15
    if workers == 1:  # parts run in order, so a text of an earlier part is already in the cache
        assert counts.scored == len(new)
    assert got["article_id"].tolist() == articles["article_id"].tolist()
    assert list(got.dtypes) == list(expected.dtypes)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-5, atol=1e-5)
