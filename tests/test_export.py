"""Export: in-graph features per the bundle contract, dynamic shapes, padding, int8 parity gate."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from gptquant import bundle as B  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.lm.checkpoint import load_checkpoint  # noqa: E402
from gptquant.lm.export import export_bundle, feature_graph  # noqa: E402
from gptquant.lm.parity import onnx_features, parity, torch_features  # noqa: E402


def _run(bundle, texts):
    m = json.loads((bundle / B.MANIFEST).read_text())
    ckpt = load_checkpoint(m["source"]["path"])
    return ckpt, m, onnx_features(bundle / B.MODEL_FILE, ckpt, texts, m["max_length"])


def test_bundle_matches_the_contract(tiny_bundle):
    manifest = B.verify_bundle(tiny_bundle)
    assert manifest["precision"] == "fp32" and manifest["max_length"] == 48
    assert manifest["tokenizer"]["add_bos"] and not manifest["tokenizer"]["add_eos"]
    assert set(manifest["files"]) == {B.MODEL_FILE, B.TOKENIZER_FILE}
    sess = ort.InferenceSession(str(tiny_bundle / B.MODEL_FILE))
    assert [i.name for i in sess.get_inputs()] == list(B.INPUTS)
    assert all(i.type == "tensor(int64)" for i in sess.get_inputs())
    assert [o.name for o in sess.get_outputs()] == list(B.TOKEN_OUTPUTS + B.POOLED_OUTPUTS)
    vocab = manifest["source"]["architecture"]["vocab_size"]
    ckpt, _, out = _run(tiny_bundle, ["公司公告，拟回购股份。", "短", "董事会审议通过年度报告。" * 2])
    for name in B.TOKEN_OUTPUTS:
        assert out[name].shape == (3, out["mask"].shape[1] - 1), name
        assert vocab not in out[name].shape, "never the [batch, seq, vocab] logits"
    assert out["pooled"].shape == (3, manifest["hidden_size"])
    valid = out["mask"][:, 1:].astype(bool)
    assert (out["token_logprob"][valid] <= 0).all() and (out["token_rank"][valid] >= 1).all()
    assert (out["token_logprob_var"][valid] >= -1e-4).all()
    assert (out["token_entropy"][valid] <= np.log(vocab) + 1e-3).all()


def test_graph_matches_torch_for_any_batch_and_padding(tiny_bundle):
    texts = ["公司公告，拟回购股份。", "董事会审议通过年度报告，同意分红。", "短"]
    ckpt, m, batched = _run(tiny_bundle, texts)
    ref = torch_features(feature_graph(ckpt.model), ckpt, texts, m["max_length"])
    fig = parity(ref, batched)
    assert fig["nll_max_abs"] < 1e-4 and fig["rank_bucket_agreement"] == 1.0
    for i, t in enumerate(texts):  # each text alone (batch 1, no padding) scores the same as in the batch
        _, _, alone = _run(tiny_bundle, [t])
        n = int(alone["mask"].sum()) - 1
        np.testing.assert_allclose(alone["token_logprob"][0, :n], batched["token_logprob"][i, :n], atol=1e-4)
        np.testing.assert_allclose(alone["pooled"][0], batched["pooled"][i], atol=1e-4)
        np.testing.assert_allclose(alone["last_hidden"][0], batched["last_hidden"][i], atol=1e-4)


def test_rank_is_one_for_the_argmax_token(tiny_checkpoint):
    import torch

    ckpt = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([[ckpt.policy.bos_id, 10, 11]])
    with torch.no_grad():
        best = int(ckpt.model(input_ids=ids).logits[0, -1].argmax())
    ids = torch.cat([ids, torch.tensor([[best]])], 1)
    tok, ent, var, rank, *_ = feature_graph(ckpt.model)(ids, torch.ones_like(ids))
    assert int(rank[0, -1]) == 1


def test_rank_counts_the_tokens_more_likely_than_the_actual_one(tiny_bundle):
    """token_rank in the exported graph (an int64 count, summed in float there for speed) is exactly 1 + the
    number of vocabulary entries whose logit beats the actual next token's, at every position."""
    import torch

    from gptquant.tokenize import encode

    texts = ["公司公告，拟回购股份。", "董事会审议通过年度报告，同意分红。"]
    ckpt, m, out = _run(tiny_bundle, texts)
    assert out["token_rank"].dtype == np.int64
    ids, mask, _ = encode(ckpt.tokenizer, texts, ckpt.policy, m["max_length"])
    with torch.no_grad():
        logits = ckpt.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.double().numpy()
    for i in range(len(texts)):
        for t in range(int(mask[i].sum()) - 1):
            z = logits[i, t]
            assert out["token_rank"][i, t] == 1 + int((z > z[ids[i, t + 1]]).sum()), (i, t)


@pytest.fixture(scope="module")
def int8_fixture_bundle(fixture_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "fin-mini-int8"
    export_bundle(fixture_model, out, int8=True, max_length=128)
    return out


def test_int8_bundle_is_quantised_including_lm_head_and_within_parity(int8_fixture_bundle):
    m = B.verify_bundle(int8_fixture_bundle)
    assert m["precision"] == "int8"
    fig = m["parity"]["int8"]
    assert fig["nll_mean_abs"] < m["parity"]["limits"]["nll_mean_abs"]
    assert fig["rank_bucket_agreement"] >= m["parity"]["limits"]["rank_bucket_agreement"]
    g = onnx.load(str(int8_fixture_bundle / B.MODEL_FILE))
    n_int = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in g.graph.node)
    assert n_int == 4 * 4 + 1, "4 weight matmuls per layer x 4 layers + the LM head"
    assert m["source"]["sha256"] and len(m["source"]["sha256"]) == 64


def test_int8_worse_than_the_limit_is_refused_and_writes_nothing(tiny_checkpoint, tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(GptquantError, match="int8 bundle refused"):
        export_bundle(tiny_checkpoint, out, int8=True, max_length=32, exporter="torchscript",
                      parity_limits={"nll_mean_abs": 1e-12})
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_reexport_replaces_bundle_atomically(tiny_checkpoint, tmp_path):
    out = tmp_path / "b"
    export_bundle(tiny_checkpoint, out, max_length=32, exporter="torchscript")
    first = B.read_manifest(out)["created"]
    with pytest.raises(GptquantError):
        export_bundle(tiny_checkpoint, out, int8=True, max_length=32, exporter="torchscript",
                      parity_limits={"rank_bucket_agreement": 1.01})
    assert B.verify_bundle(out)["created"] == first, "a failed export leaves the previous bundle in place"


def test_optimized_graph_quantises_and_keeps_parity(tiny_checkpoint, tmp_path):
    m = export_bundle(tiny_checkpoint, tmp_path / "opt", int8=True, max_length=32, exporter="torchscript", optimize="on")
    opt = m["parity"]["optimizer"]
    assert opt["used"] and opt["nll_max_abs"] < 1e-3 and opt["fused"], opt
    assert m["parity"]["int8"]["nll_mean_abs"] < m["parity"]["limits"]["nll_mean_abs"]
    assert export_bundle(tiny_checkpoint, tmp_path / "plain", max_length=32, exporter="torchscript")["parity"]["optimizer"] == {
        "used": False, "reason": "off"}


@pytest.mark.parametrize("mask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_exported_and_uploaded_bundles_get_the_users_umask(tiny_checkpoint, tmp_path, mask):
    """A bundle exported (or installed) by one user is readable by a colleague: the folder is 0755 / 0750
    and its files 0644 / 0640 as mkdir / open() would give, not mkdtemp's 0700 or mkstemp's 0600."""
    import os
    import stat

    from gptquant.runtime.tools import pack, upload

    (tmp_path / "project").mkdir()
    old = os.umask(mask)
    try:
        export_bundle(tiny_checkpoint, tmp_path / "b", max_length=32, exporter="torchscript")
        pack(tmp_path / "b", tmp_path / "b.tar.gz")
        upload(tmp_path / "b.tar.gz", tmp_path / "project")
    finally:
        os.umask(old)
    paths = [tmp_path / "b", *(tmp_path / "b").iterdir(), tmp_path / "b.tar.gz",
             tmp_path / "project" / "model", *(tmp_path / "project" / "model").iterdir()]
    assert len(paths) >= 9
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~mask}
    assert wrong == {}
