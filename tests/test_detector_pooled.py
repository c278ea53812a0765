"""The pooled-state detector: fitted on the statistics and/or the pass's pooled hidden state (chosen on a
validation split), stored as plain JSON, applied by the torch-free scorer to the right rows, refused when
its width does not match the bundle, and checked int8 vs fp32 at export."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from gptquant import bundle as B
from gptquant.errors import GptquantError
from gptquant.lm.detector import FEATURES, fit_detector
from gptquant.runtime.heads import check_detector, detector_score


def synthetic(n=400, dim=16, seed=0):
    """Statistics that are pure noise and a pooled state whose first two units carry the label."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)]
    feats = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    pooled = rng.normal(size=(n, dim))
    pooled[:, :2] += 1.5 * y[:, None]
    return feats, pooled, y


def test_auto_picks_the_pooled_state_on_validation_and_round_trips_as_json():
    feats, pooled, y = synthetic()
    det, report = fit_detector(feats, y, pooled=pooled)
    assert set(report["valid_auroc"]) == {"stats", "pooled", "both"}
    assert report["features"] in ("pooled", "both") and report["valid_auroc"]["stats"] < 0.7
    assert report["test_auroc"]["ai_score"] > 0.9
    det = check_detector(json.loads(json.dumps(det)), hidden_size=16)  # plain JSON numbers, no pickle
    p = detector_score(feats, det, pooled)
    assert ((p >= 0) & (p <= 1)).all()
    with pytest.raises(GptquantError, match="pooled"):
        detector_score(feats, det)  # needs the state, says so
    stats_only, rep = fit_detector(feats, y, pooled=pooled, features="stats")
    assert "pooled" not in stats_only and rep["features"] == "stats" and rep["test_auroc"]["ai_score"] < 0.7
    with pytest.raises(GptquantError, match="needs the pooled"):
        fit_detector(feats, y, features="both")


def test_width_mismatch_is_refused_naming_the_sizes():
    feats, pooled, y = synthetic(dim=16)
    det, _ = fit_detector(feats, y, pooled=pooled, features="pooled")
    assert det["features"] == [] and det["pooled"]["dim"] == 16
    with pytest.raises(GptquantError, match="16-wide.*hidden size is 64"):
        check_detector(det, "m", hidden_size=64)
    with pytest.raises(GptquantError, match="pooled.coef"):
        check_detector({**det, "pooled": {**det["pooled"], "coef": det["pooled"]["coef"][:-1]}})


def _pooled_detector(scorer, texts, seed=0):
    """A detector on the bundle's real statistics and pooled states, labels split by text length."""
    df, pooled = next(scorer.score_batches(texts, chunk_size=len(texts), with_pooled=True))
    y = (df["n_tokens"] > df["n_tokens"].median()).to_numpy().astype(int)
    det, _ = fit_detector(df, y, pooled=pooled, features="both", seed=seed)
    return det


def test_scorer_passes_each_row_its_own_pooled_state(tiny_bundle, tmp_path):
    from conftest import demo_texts

    from gptquant.runtime.scorer import Scorer

    texts = demo_texts(50, seed=3)
    texts = [t[: 5 + 3 * i] for i, t in enumerate(texts)]  # varied lengths: batches are length-sorted
    det = _pooled_detector(Scorer(tiny_bundle), texts)
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    manifest = {k: v for k, v in B.read_manifest(bundle).items() if k not in ("files", "format", "format_version")}
    B.write_manifest(bundle, {**manifest, "heads": {"detector": det}})
    scorer = Scorer(bundle, batch_size=8)
    df = scorer.score(texts)
    assert df["ai_score"].between(0, 1).all()
    expected = detector_score(df, det, scorer.embed(texts))
    np.testing.assert_allclose(df["ai_score"], expected, atol=1e-6)
    assert len(scorer.score([])) == 0 and "ai_score" in scorer.score([]).columns

    wrong = {**det, "pooled": {**det["pooled"], "dim": 3, **{k: det["pooled"][k][:3] for k in ("mean", "scale", "coef")}}}
    B.write_manifest(bundle, {**manifest, "heads": {"detector": wrong}})
    with pytest.raises(GptquantError, match="3-wide pooled states but this model's hidden size is 64"):
        Scorer(bundle)


def test_int8_export_reports_ai_score_parity_and_refuses_over_the_limit(tiny_checkpoint, tiny_bundle, tmp_path):
    pytest.importorskip("torch")
    from conftest import demo_texts

    from gptquant.lm.export import export_bundle
    from gptquant.lm.headfile import DETECTOR_JSON
    from gptquant.runtime.scorer import Scorer

    det = _pooled_detector(Scorer(tiny_bundle), [t[: 8 + 2 * i] for i, t in enumerate(demo_texts(50, seed=4))])
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / DETECTOR_JSON).write_text(json.dumps(det))
    m = export_bundle(ckpt, tmp_path / "b", int8=True, max_length=48, exporter="torchscript",
                      parity_limits={"ai_prob_max_abs": 1.0, "ai_label_agreement": 0.0})
    fig = m["parity"]["int8"]
    assert 0 <= fig["ai_prob_mean_abs"] <= fig["ai_prob_max_abs"] <= 1 and 0 <= fig["ai_label_agreement"] <= 1
    assert m["parity"]["fp32"]["ai_prob_max_abs"] < 1e-3  # the fp32 graph is the torch computation
    assert Scorer(tmp_path / "b").score(["公司公告回购股份。"])["ai_score"].between(0, 1).all()
    with pytest.raises(GptquantError, match="ai_prob_max_abs"):
        export_bundle(ckpt, tmp_path / "refused", int8=True, max_length=48, exporter="torchscript",
                      parity_limits={"ai_prob_max_abs": -1.0})
    assert not (tmp_path / "refused").exists()
