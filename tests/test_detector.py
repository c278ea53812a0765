"""The machine-written-text detector: fitted on zero-shot statistics, calibrated, carried in the manifest
and applied by the torch-free runtime as ai_score."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from gptquant import bundle as B
from gptquant.errors import GptquantError
from gptquant.lm.detector import FEATURES, fit_detector
from gptquant.runtime.heads import apply_heads, check_detector, detector_score


def synthetic_stats(n=600, seed=0, gap=1.5):
    """Statistics where machine text (y=1) is more predictable: lower NLL/log-rank, more top-10 tokens."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)]
    feats = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    feats["nll_mean"] -= gap * y
    feats["logrank_mean"] -= gap * y
    feats["rank_top10"] += 0.5 * gap * y
    return feats, y


def test_detector_separates_and_reports_each_statistic_on_unseen_rows():
    feats, y = synthetic_stats()
    det, report = fit_detector(feats, y, seed=0)
    check_detector(det)
    auc = report["test_auroc"]
    assert auc["ai_score"] > 0.85
    assert auc["nll_mean"] > 0.75  # direction chosen on the training split: lower NLL means machine
    assert 0.35 < auc["entropy_mean"] < 0.65  # pure noise stays near chance
    assert report["n_test"] == round(0.2 * len(y))
    p = detector_score(feats, det)
    assert ((p >= 0) & (p <= 1)).all()
    assert p[y == 1].mean() > 0.7 and p[y == 0].mean() < 0.3


def test_undefined_statistics_are_excluded_counted_and_scored_nan():
    feats, y = synthetic_stats()
    feats.loc[[0, 1, 2], "fast_detect"] = np.nan
    det, report = fit_detector(feats, y)
    assert report["excluded_undefined"] == 3
    assert np.isnan(detector_score(feats.iloc[:3], det)).all()


def test_manifest_detector_adds_ai_score_and_bad_ones_name_the_field():
    feats, y = synthetic_stats()
    det, _ = fit_detector(feats, y)
    assert "ai_score" not in apply_heads(feats, {}).columns
    out = apply_heads(feats, {"heads": {"detector": det}})
    np.testing.assert_allclose(out["ai_score"], detector_score(feats, det))
    empty = apply_heads(feats.iloc[:0], {"heads": {"detector": det}})
    assert "ai_score" in empty.columns and len(empty) == 0
    with pytest.raises(GptquantError, match="'scale'"):
        check_detector({**det, "scale": det["scale"][:-1]}, "m")
    with pytest.raises(GptquantError, match="calibration"):
        check_detector({k: v for k, v in det.items() if k != "calibration"}, "m")
    with pytest.raises(GptquantError, match="fast_detect"):
        detector_score(feats.drop(columns="fast_detect"), det)


def test_train_detector_writes_the_bundle_manifest_and_scoring_gives_ai_score(tiny_checkpoint, tiny_bundle, tmp_path):
    from conftest import demo_texts

    from gptquant.cli import main
    from gptquant.lm.checkpoint import load_checkpoint
    from gptquant.tokenize import token_ids
    from gptquant.runtime.scorer import Scorer

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    human = tmp_path / "human.csv"
    machine = tmp_path / "machine.csv"
    pd.DataFrame({"text": demo_texts(100, seed=1)}).to_csv(human, index=False)
    # machine-written: low-temperature samples from the very model behind the bundle (one batched loop)
    import torch

    ckpt = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([s[:5] for s in token_ids(ckpt.tokenizer, demo_texts(100, seed=2), ckpt.policy)])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(25):
            probs = torch.softmax(ckpt.model(input_ids=ids).logits[:, -1] / 0.7, -1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], 1)
    texts = ["".join(ckpt.tokenizer.decode(row[1:].tolist()).split()) for row in ids]
    pd.DataFrame({"text": texts}).to_csv(machine, index=False)
    assert main(["train", "detector", "--model", str(bundle), "--human", str(human), "--machine", str(machine),
                 "--out", str(tmp_path / "det.json")]) == 0
    manifest = B.verify_bundle(bundle)  # hashes rewritten, still valid
    assert manifest["heads"]["detector"]["test"]["ai_score"] > 0.8
    assert json.loads((tmp_path / "det.json").read_text())["coef"] == manifest["heads"]["detector"]["coef"]
    df = Scorer(bundle).score(pd.read_csv(machine)["text"].tolist()[:5] + pd.read_csv(human)["text"].tolist()[:5])
    assert df["ai_score"].between(0, 1).all()
    assert df["ai_score"][:5].mean() > df["ai_score"][5:].mean()


def test_checkpoint_detector_rides_into_the_exported_manifest(tiny_checkpoint, tmp_path):
    pytest.importorskip("torch")
    from gptquant.lm.export import export_bundle
    from gptquant.lm.headfile import DETECTOR_JSON

    feats, y = synthetic_stats()
    det, _ = fit_detector(feats, y)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    (ckpt / DETECTOR_JSON).write_text(json.dumps(det))
    manifest = export_bundle(ckpt, tmp_path / "b", max_length=32, exporter="torchscript", optimize="off")
    assert manifest["heads"]["detector"]["coef"] == det["coef"]
    assert "labels" not in manifest  # a detector alone adds no sentiment output
