"""The Ray engine (local Ray, 2 CPUs) gives the same features as the local pool and the plain Scorer."""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import DATA, demo_texts
from gptquant.cli import main
from gptquant.errors import GptquantError
from gptquant.features.pipeline import score_articles
from gptquant.runtime.engines import open_engine
from gptquant.runtime.scorer import Scorer

pytest.importorskip("torch")  # tiny_bundle is exported by the project's own torch code
ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gptquant[ray]'")


pytestmark = pytest.mark.usefixtures("local_ray")


def test_ray_matches_plain_scorer_and_keeps_input_order(tiny_bundle):
    texts = demo_texts(50, seed=11)
    articles = pd.DataFrame({"article_id": list(range(100, 50, -1)), "text": [t * (1 + i % 3) for i, t in enumerate(texts)]})
    expected = Scorer(tiny_bundle).score(articles["text"].tolist())
    got = score_articles(articles, tiny_bundle, engine="ray", workers=2, part_size=6, batch_size=4)
    assert got["article_id"].tolist() == articles["article_id"].tolist()
    pd.testing.assert_frame_equal(got.drop(columns="article_id"), expected, check_exact=False, rtol=1e-5, atol=1e-5)


def test_ray_worker_errors_are_one_clear_error(tiny_bundle):
    with pytest.raises(GptquantError, match="driver") as err:
        with open_engine("ray", bundle_dir=tiny_bundle, bundle_hash="0" * 16, workers=1) as run:
            list(run([(0, pd.DataFrame({"article_id": [1], "text": ["甲"]}))]))
    assert str(err.value) == f"{tiny_bundle}: this worker sees bundle {Scorer(tiny_bundle).bundle_hash}, the driver {'0' * 16}"


def test_real_news_local_and_ray_give_identical_features(tiny_bundle, tmp_path):
    source = DATA / "astock_news" / "astock_news.csv"
    if not source.is_file():
        pytest.skip(f"needs {source}")
    news = tmp_path / "news.csv"
    pd.read_csv(source, dtype=str, keep_default_na=False, nrows=200).to_csv(news, index=False)
    outs = {}
    for engine, workers in [("local", 1), ("local", 2), ("ray", 2)]:
        out = tmp_path / f"{engine}{workers}.parquet"
        assert main(["score", "--model", str(tiny_bundle), "--news", str(news), "--out", str(out),
                     "--engine", engine, "--workers", str(workers), "--part-size", "64"]) == 0
        outs[engine, workers] = pd.read_parquet(out)
    base = outs["local", 1]
    assert len(base) == 200 and base["n_tokens"].gt(0).all()
    for key in [("local", 2), ("ray", 2)]:
        pd.testing.assert_frame_equal(outs[key], base, check_exact=False, rtol=1e-5, atol=1e-5)


def test_a_worker_with_another_gptquant_version_refuses_naming_both(tiny_bundle, monkeypatch):
    import gptquant.version

    real = gptquant.version.__version__
    monkeypatch.setattr(gptquant.version, "__version__", "9.9.9")  # the driver's; workers import the installed one
    with pytest.raises(GptquantError) as err:
        score_articles(pd.DataFrame({"article_id": [1], "text": ["甲"]}), tiny_bundle, engine="ray", workers=1)
    assert str(err.value) == (f"this Ray worker runs gptquant {real}, the driver 9.9.9: "
                              "install the same gptquant on every node")
