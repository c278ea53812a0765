"""The runtime on bundles exported by gptquant.lm from a real (tiny) GPT-2: agreement with torch, padding."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gptquant import load_model
from gptquant.runtime import Scorer
from conftest import demo_texts


def torch_nll(checkpoint, ids: list[int]) -> tuple[float, int]:
    """Mean next-token NLL of one id sequence straight from the torch model (no padding)."""
    import torch

    from gptquant.lm.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).model
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1]
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
    return float(-lp.mean()), len(ids) - 1


def test_scores_match_torch_and_ignore_padding(tiny_bundle, tiny_checkpoint):
    texts = demo_texts(6, seed=11)
    texts[2] = texts[2][:5]  # very different lengths in one batch
    texts[4] = texts[4] * 4  # longer than max_length 48: truncated
    scorer = Scorer(tiny_bundle, batch_size=4)
    df = scorer.score(texts)
    assert bool(df["truncated"].iloc[4]) and not bool(df["truncated"].iloc[2])
    ids, _ = scorer.encode(texts)
    for i in (0, 2, 4):
        nll, n = torch_nll(tiny_checkpoint, ids[i])
        assert df["n_tokens"].iloc[i] == n
        assert df["nll_mean"].iloc[i] == pytest.approx(nll, rel=1e-4, abs=1e-4)
    alone = pd.concat([scorer.score([t]) for t in texts], ignore_index=True)
    cols = ["nll_mean", "nll_std", "entropy_mean", "rank_top10", "logrank_mean", "fast_detect"]
    np.testing.assert_allclose(df[cols].to_numpy(float), alone[cols].to_numpy(float), rtol=1e-4, atol=1e-4)
    emb = scorer.embed(texts[:3])
    assert emb.shape[0] == 3 and np.isfinite(emb).all()


def test_fp32_features_do_not_depend_on_the_rest_of_the_batch(tiny_bundle):
    short, longer = [t[:12] for t in demo_texts(5, seed=5)], [t * 6 for t in demo_texts(3, seed=6)]  # 48 tokens
    scorer = Scorer(tiny_bundle, batch_size=64, batch_tokens=10**6)  # one padded batch holds them all
    beside = scorer.score(short + longer).iloc[: len(short)].reset_index(drop=True)
    alone = pd.concat([scorer.score([t]) for t in short], ignore_index=True)
    cols = [c for c in beside.columns if c not in ("n_tokens", "truncated")]
    assert (beside["n_tokens"] < 14).all() and (beside[cols].notna().all().all())
    assert np.abs(beside[cols].to_numpy(float) - alone[cols].to_numpy(float)).max() <= 1e-4
    np.testing.assert_allclose(scorer.embed(short + longer)[: len(short)], scorer.embed(short), atol=1e-4)


def test_load_model_exports_an_int8_bundle_from_a_checkpoint(tiny_checkpoint, tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path))
    scorer = load_model(tiny_checkpoint, batch_size=8)
    assert scorer.manifest["precision"] == "int8" and scorer.manifest["name"] == tiny_checkpoint.name
    assert scorer.bundle_dir.parent == tmp_path / "bundles"
    texts = [t[:30] for t in demo_texts(8, seed=3)]  # under both bundles' max_length
    q = scorer.score(texts)
    ref = Scorer(tiny_bundle).score(texts)
    assert (q["n_tokens"] == ref["n_tokens"]).all() and not q["truncated"].any()
    assert np.abs(q["nll_mean"] - ref["nll_mean"]).max() < 0.1  # int8 stays close to fp32
    assert load_model(tiny_checkpoint).bundle_dir == scorer.bundle_dir  # cached, not re-exported
    short, longer = [t[:12] for t in demo_texts(5, seed=5)], [t * 6 for t in demo_texts(3, seed=6)]
    beside = scorer.score(short + longer).iloc[: len(short)].reset_index(drop=True)
    alone = pd.concat([scorer.score([t]) for t in short], ignore_index=True)
    pd.testing.assert_frame_equal(beside, alone, check_exact=True)  # int8: no tolerance, each text runs alone


def test_the_score_verb_exports_a_checkpoint_before_the_runtime_opens_it(tiny_checkpoint, tmp_path, monkeypatch):
    from gptquant.cli import main

    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path / "cache"))
    texts = [t[:30] for t in demo_texts(6, seed=4)]
    news = tmp_path / "news.csv"
    pd.DataFrame({"id": [f"a{i}" for i in range(6)], "text": texts}).to_csv(news, index=False)
    out = tmp_path / "f.parquet"
    assert main(["score", "--model", str(tiny_checkpoint), "--news", str(news), "--out", str(out)]) == 0
    cached = list((tmp_path / "cache" / "bundles").iterdir())
    assert len(cached) == 1  # exported once, where load_model finds it without exporting again
    np.testing.assert_array_equal(pd.read_parquet(out)["nll_mean"], Scorer(cached[0]).score(texts)["nll_mean"])
    assert load_model(tiny_checkpoint).bundle_dir == cached[0]
