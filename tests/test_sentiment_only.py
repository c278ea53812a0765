"""Sentiment-only bundles: the graph holds the sentiment head alone (no per-token LM head), gives the
same sent_* columns as the full bundle, drops the LM-statistic columns, and says so in the manifest/info."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
import onnx  # noqa: E402

from gptquant import bundle as B  # noqa: E402
from gptquant.cli import main  # noqa: E402
from gptquant.demo_world import LABELS, write_article  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.lm import sentiment as S  # noqa: E402
from gptquant.lm import headfile as H  # noqa: E402
from gptquant.lm.export import export_bundle  # noqa: E402
from gptquant.runtime.scorer import Scorer  # noqa: E402

SENT = ["sent_neg", "sent_neu", "sent_pos", "sentiment"]


def texts(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return [write_article(f"样本{'甲乙丙'[i % 3]}公司", int(rng.integers(3)), rng) for i in range(n)]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    path = tmp_path_factory.mktemp("so") / "train.csv"
    pd.DataFrame({"text": [write_article("样本公司", int(k), rng) for k in y], "label": [LABELS[k] for k in y]}
                 ).to_csv(path, index=False)
    return path


def vocab_matmuls(path, vocab_size):
    """Initializers of the graph with a vocabulary-sized dimension feeding a MatMul (a per-token LM head)."""
    g = onnx.load(str(path)).graph
    inits = {i.name: tuple(i.dims) for i in g.initializer}
    return [n.name for n in g.node if n.op_type in ("MatMul", "Gemm", "MatMulInteger")
            and any(vocab_size in inits.get(i, ()) for i in n.input)]


@pytest.mark.parametrize("method", ["ptuning", "linear"])
def test_sentiment_only_bundle_matches_the_full_one_without_the_lm_head(method, tiny_checkpoint, data_csv, tmp_path):
    ckpt = tmp_path / "m"
    S.train_sentiment(tiny_checkpoint, data_csv, ckpt, method, steps=4, eval_every=2, batch=8, max_length=40,
                      progress=False)
    full = export_bundle(ckpt, tmp_path / "full", max_length=48, exporter="torchscript")
    only = export_bundle(ckpt, tmp_path / "only", max_length=48, exporter="torchscript", sentiment_only=True)
    assert full["graph"] == "full" and only["graph"] == "sentiment-only"
    hidden = ["pooled", "last_hidden"] if method == "linear" else []
    assert only["outputs"] == hidden + [B.SENTIMENT_OUTPUT]
    vocab = full["source"]["architecture"]["vocab_size"]
    assert vocab_matmuls(tmp_path / "full" / B.MODEL_FILE, vocab)  # the check can see an LM head
    assert not vocab_matmuls(tmp_path / "only" / B.MODEL_FILE, vocab)
    sample = texts(20, seed=1) + ["短", "公告" * 60]  # one-token and truncated texts too
    a = Scorer(tmp_path / "full", batch_size=8).score(sample)
    b = Scorer(tmp_path / "only", batch_size=8).score(sample)
    assert list(b.columns) == ["n_tokens", "truncated"] + SENT  # LM statistics absent, not NaN
    np.testing.assert_allclose(b[SENT].to_numpy(), a[SENT].to_numpy(), atol=1e-5)
    assert (b["n_tokens"] == a["n_tokens"]).all() and (b["truncated"] == a["truncated"]).all()
    assert b["truncated"].iloc[-1]


def test_cli_export_sentiment_only_int8_and_info(tiny_checkpoint, data_csv, tmp_path, capsys):
    ckpt = tmp_path / "m"
    S.train_sentiment(tiny_checkpoint, data_csv, ckpt, "ptuning", steps=4, eval_every=2, batch=8, max_length=40,
                      progress=False)
    from gptquant.lm.detector import FEATURES, fit_detector

    feats = pd.DataFrame({f: np.random.default_rng(i).normal(size=60) for i, f in enumerate(FEATURES)})
    det, _ = fit_detector(feats, np.r_[np.zeros(30), np.ones(30)], features="stats")
    (ckpt / H.DETECTOR_JSON).write_text(json.dumps(det))
    assert main(["export", str(ckpt), "--out", str(tmp_path / "b"), "--int8", "--max-length", "48",
                 "--exporter", "torchscript", "--sentiment-only"]) == 0
    out = capsys.readouterr().out
    assert "sentiment-only graph" in out and "sentiment labels" in out
    m = B.verify_bundle(tmp_path / "b")
    assert m["precision"] == "int8" and "sent_label_agreement" in m["parity"]["int8"]
    assert "nll_mean_abs" not in m["parity"]["int8"]
    df = Scorer(tmp_path / "b").score(texts(5))
    assert "ai_score" not in df.columns  # the detector reads statistics this graph does not compute
    assert df[SENT[:3]].sum(axis=1).round(5).eq(1).all()
    assert main(["model", "info", str(tmp_path / "b")]) == 0
    assert "graph      sentiment-only" in capsys.readouterr().out


def test_sentiment_only_needs_a_head_and_a_consistent_manifest(tiny_checkpoint, tiny_bundle, tmp_path):
    with pytest.raises(GptquantError, match="needs a sentiment head"):
        export_bundle(tiny_checkpoint, tmp_path / "x", max_length=48, exporter="torchscript", sentiment_only=True)
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    manifest = {k: v for k, v in B.read_manifest(bundle).items() if k not in ("files", "format", "format_version")}
    B.write_manifest(bundle, {**manifest, "graph": "sentiment-only"})
    with pytest.raises(B.BundleError, match="sentiment-only bundle needs manifest labels"):
        Scorer(bundle)
    B.write_manifest(bundle, {**manifest, "graph": "tokens"})
    with pytest.raises(B.BundleError, match="graph must be one of"):
        Scorer(bundle)
