"""Scoring engines: a local process pool gives the same rows and values as the plain Scorer, in input order."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import demo_texts
from gptquant.cli import main
from gptquant.errors import GptquantError
from gptquant.features.pipeline import score_articles
from gptquant.runtime.engines import open_engine, restore_order
from gptquant.runtime.scorer import Scorer



@pytest.fixture(scope="module")
def articles():
    """~50 synthetic flashes of varied length under shuffled, non-sequential ids."""
    texts = demo_texts(50, seed=7)
    texts = [t * (1 + i % 3) for i, t in enumerate(texts)]  # some exceed max_length (48 tokens)
    ids = [f"n{v:03d}" for v in np.random.default_rng(1).permutation(500)[:50]]
    return pd.DataFrame({"article_id": ids, "text": texts})


def assert_same(a: pd.DataFrame, b: pd.DataFrame):
    assert a["article_id"].tolist() == b["article_id"].tolist()
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False, rtol=1e-5,
                                  atol=1e-5, check_dtype=False)


def plain(bundle, articles):
    feats = Scorer(bundle).score(articles["text"].tolist())
    feats.insert(0, "article_id", articles["article_id"].to_numpy())
    return feats


def test_pool_matches_plain_scorer_in_input_order(tiny_bundle, articles):
    expected = plain(tiny_bundle, articles)
    assert expected["truncated"].any() and not expected["truncated"].all()
    # parts of 7 over 2 processes finish out of order; the result must still follow the input
    pooled = score_articles(articles, tiny_bundle, workers=2, part_size=7, batch_size=4)
    assert_same(pooled, expected)
    inline = score_articles(articles, tiny_bundle, workers=1, part_size=7, batch_size=4)
    assert_same(inline, expected)


def test_cli_pool_writes_the_same_file_as_the_default(tiny_bundle, articles, tmp_path, capsys):
    news = tmp_path / "news.csv"
    articles.rename(columns={"article_id": "id"}).to_csv(news, index=False)
    outs = []
    for extra in ([], ["--workers", "2", "--part-size", "9"]):
        out = tmp_path / f"f{len(extra)}.parquet"
        assert main(["score", "--model", str(tiny_bundle), "--news", str(news), "--out", str(out), *extra]) == 0
        outs.append(pd.read_parquet(out))
    assert "on local x2" in capsys.readouterr().out
    assert outs[0]["article_id"].tolist() == articles["article_id"].tolist()
    assert_same(outs[1], outs[0])
    assert not (tmp_path / "f4.parquet.parts").exists()


def test_a_worker_error_reaches_the_caller(tiny_bundle, articles):
    bad = articles.copy()
    bad["text"] = bad["text"].astype(object)
    bad.loc[12, "text"] = 5
    with pytest.raises(GptquantError, match="not a string"):
        score_articles(bad, tiny_bundle, workers=2, part_size=10)


def test_worker_refuses_a_bundle_other_than_the_drivers(tiny_bundle, articles):
    with open_engine("local", bundle_dir=tiny_bundle, bundle_hash="0" * 16, workers=2) as run:
        with pytest.raises(GptquantError, match="driver"):
            list(run([(0, articles.head(3))]))


def test_bad_engine_settings_are_refused(tiny_bundle, articles):
    for kw, msg in [({"engine": "spark"}, "engine must be"), ({"workers": 0}, "workers must be"),
                    ({"engine": "local", "address": "ray://x:1"}, "address")]:
        with pytest.raises(GptquantError, match=msg):
            score_articles(articles, tiny_bundle, **kw)
    dup = articles.assign(article_id="same")
    with pytest.raises(GptquantError, match="not unique"):
        score_articles(dup, tiny_bundle)


def test_restore_order_reorders_and_refuses_lost_rows():
    ids = pd.Series(["c", "a", "b"])
    parts = [pd.DataFrame({"article_id": ["a", "b"], "x": [1, 2]}), pd.DataFrame({"article_id": ["c"], "x": [3]})]
    assert restore_order(ids, parts)["x"].tolist() == [3, 1, 2]
    with pytest.raises(GptquantError, match="2 rows for 3 articles"):
        restore_order(ids, parts[:1])
    with pytest.raises(GptquantError, match="ids do not match"):  # one row twice, another lost
        restore_order(ids, [parts[0], parts[0].head(1)])
