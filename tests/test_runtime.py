"""Scorer and load_model on a synthetic bundle: order, padding, truncation, features, verification, torch-free."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

import gptquant
from gptquant import bundle as B
from gptquant.errors import GptquantError, MissingExtra
from gptquant.runtime import Scorer, load_model
from conftest import LABELS3, make_bundle, words

FEATURES = ["nll_mean", "nll_std", "ppl", "entropy_mean", "rank_top10", "rank_top100", "rank_top1000",
            "logrank_mean", "fast_detect", "sent_neg", "sent_neu", "sent_pos", "sentiment"]


def texts_of(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [words(rng, n) for n in lengths]


def test_import_runtime_never_loads_torch():
    code = ("import sys, gptquant.runtime, gptquant.runtime.scorer, gptquant.runtime.news, "
            "gptquant.runtime.tools, gptquant.runtime.cli; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rows_follow_input_order_and_padding_changes_nothing(synth_bundle):
    texts = texts_of([9, 2, 13, 1, 5, 11, 3, 7])
    batched = Scorer(synth_bundle, batch_size=3).score(texts)
    alone = pd.concat([Scorer(synth_bundle, batch_size=1).score([t]) for t in texts], ignore_index=True)
    assert list(batched.columns[:3]) == ["n_tokens", "truncated", "nll_mean"]
    assert batched["n_tokens"].tolist() == [n + 1 for n in [9, 2, 13, 1, 5, 11, 3, 7]]  # + EOS scored
    np.testing.assert_allclose(batched[FEATURES].to_numpy(float), alone[FEATURES].to_numpy(float), rtol=1e-5, atol=1e-6)
    assert batched["n_tokens"].tolist() == alone["n_tokens"].tolist()
    # a text's row does not depend on which other texts share its batch
    reordered = Scorer(synth_bundle, batch_size=4).score(texts[::-1])
    np.testing.assert_allclose(reordered[FEATURES].to_numpy(float)[::-1], batched[FEATURES].to_numpy(float), rtol=1e-5, atol=1e-6)


def test_token_budget_bounds_every_batch_and_changes_no_row(synth_bundle):
    texts = texts_of([30, 2, 25, 1, 5, 28, 3, 7, 12, 40])
    small = Scorer(synth_bundle, batch_size=8, batch_tokens=48)
    shapes = []
    run = small.session.run
    small.session = types.SimpleNamespace(run=lambda out, feed: shapes.append(feed["input_ids"].shape) or run(out, feed),
                                          get_outputs=small.session.get_outputs)
    rows = small.score(texts)
    # every batch fits 48 padded tokens unless one text alone is longer; short texts still share batches
    assert all(b * s <= 48 or b == 1 for b, s in shapes) and max(b for b, _ in shapes) > 1
    big = Scorer(synth_bundle, batch_size=8, batch_tokens=4096).score(texts)
    np.testing.assert_allclose(rows[FEATURES].to_numpy(float), big[FEATURES].to_numpy(float), rtol=1e-5, atol=1e-6)
    with pytest.raises(GptquantError, match="batch_tokens"):
        Scorer(synth_bundle, batch_tokens=0)


def test_idle_threads_do_not_spin_unless_asked_and_rows_do_not_change(synth_bundle):
    """On shared cores a busy-waiting onnxruntime thread holds a core its sibling needs, so the Scorer turns
    spinning off; spin=True turns it back on, with the same rows."""
    texts = texts_of([9, 2, 13])
    quiet, spinning = Scorer(synth_bundle, threads=2), Scorer(synth_bundle, threads=2, spin=True)
    key = "session.intra_op.allow_spinning"
    assert quiet.session.get_session_options().get_session_config_entry(key) == "0"
    assert spinning.session.get_session_options().get_session_config_entry(key) == "1"
    np.testing.assert_allclose(quiet.score(texts)[FEATURES].to_numpy(float), spinning.score(texts)[FEATURES].to_numpy(float),
                               rtol=1e-6, atol=1e-7)


def test_features_match_the_per_token_outputs(synth_bundle):
    s = Scorer(synth_bundle)
    text = texts_of([6], seed=3)[0]
    ids, _ = s.encode([text])
    x = np.array(ids, dtype=np.int64)
    out = dict(zip([o.name for o in s.session.get_outputs()],
                   s.session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})))
    lp, ent = out["token_logprob"][0].astype(float), out["token_entropy"][0].astype(float)
    var, rank = out["token_logprob_var"][0].astype(float), out["token_rank"][0]
    row = s.score([text]).iloc[0]
    assert row["n_tokens"] == len(lp) == 7 and not row["truncated"]
    assert row["nll_mean"] == pytest.approx(-lp.mean())
    assert row["nll_std"] == pytest.approx(lp.std())
    assert row["ppl"] == pytest.approx(np.exp(-lp.mean()))
    assert row["entropy_mean"] == pytest.approx(ent.mean())
    assert row["rank_top10"] == pytest.approx((rank <= 10).mean())
    assert row["logrank_mean"] == pytest.approx(np.log(rank).mean())
    assert row["fast_detect"] == pytest.approx((lp.sum() + ent.sum()) / np.sqrt(var.sum()))
    probs = np.exp(out["sent_logprob"][0].astype(float))
    assert [row["sent_neg"], row["sent_neu"], row["sent_pos"]] == pytest.approx(list(probs))
    assert row["sentiment"] == pytest.approx(probs[2] - probs[0])


def test_long_text_is_truncated_and_flagged(synth_bundle):
    s = Scorer(synth_bundle)  # max_length 16 incl. BOS
    df = s.score(texts_of([40, 14, 15]))
    assert df["truncated"].tolist() == [True, False, True]  # 14 words + BOS + EOS = 16 fits; 15 does not
    assert df["n_tokens"].tolist() == [15, 15, 15]
    assert df["truncated"].dtype == bool


def test_score_batches_streams_with_global_positions(synth_bundle):
    s = Scorer(synth_bundle, batch_size=2)
    texts = texts_of([3, 8, 1, 12, 6, 2, 9])
    parts = list(s.score_batches(iter(texts), chunk_size=3))
    assert [len(p) for p in parts] == [3, 3, 1]
    assert [list(p.index) for p in parts] == [[0, 1, 2], [3, 4, 5], [6]]
    whole = s.score(texts)
    pd.testing.assert_frame_equal(pd.concat(parts), whole, check_exact=False, rtol=1e-6)
    series = pd.Series(texts, index=[f"a{i}" for i in range(7)])
    assert list(s.score(series).index) == list(series.index)
    assert s.tokens_scored > 0 and s.tokens_per_second > 0


def test_embed_rows_follow_input_order(synth_bundle):
    s = Scorer(synth_bundle, batch_size=2)
    texts = texts_of([7, 1, 4])
    emb = s.embed(texts)
    assert emb.shape == (3, 8) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[1], s.embed([texts[1]])[0], rtol=1e-6)


def test_label_sets_give_named_columns(tmp_path):
    make_bundle(tmp_path / "two", labels=["bearish", "bullish"])
    make_bundle(tmp_path / "none", labels=None)
    two = Scorer(tmp_path / "two").score(texts_of([4]))
    assert {"sent_bearish", "sent_bullish"} <= set(two.columns) and "sentiment" not in two.columns
    assert two[["sent_bearish", "sent_bullish"]].sum(axis=1).iloc[0] == pytest.approx(1.0)
    none = Scorer(tmp_path / "none").score(texts_of([4]))
    assert not [c for c in none.columns if c.startswith("sent")]


def test_three_labels_map_by_name_else_by_position(tmp_path):
    text = texts_of([5], seed=2)
    make_bundle(tmp_path / "std", labels=["negative", "neutral", "positive"])
    make_bundle(tmp_path / "rev", labels=["positive", "neutral", "negative"])  # same graph, names reversed
    make_bundle(tmp_path / "zh", labels=["看空", "观望", "看多"])  # unrecognised names: by position
    std = Scorer(tmp_path / "std").score(text).iloc[0]
    rev = Scorer(tmp_path / "rev").score(text).iloc[0]
    zh = Scorer(tmp_path / "zh").score(text).iloc[0]
    assert rev["sent_pos"] == pytest.approx(std["sent_neg"]) and rev["sent_neg"] == pytest.approx(std["sent_pos"])
    assert rev["sentiment"] == pytest.approx(-std["sentiment"])
    assert [zh["sent_neg"], zh["sent_pos"], zh["sentiment"]] == pytest.approx([std["sent_neg"], std["sent_pos"], std["sentiment"]])


def test_tampered_or_unlisted_bundle_is_refused(tmp_path):
    make_bundle(tmp_path / "b")
    model = tmp_path / "b" / B.MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(B.BundleError, match="sha256 mismatch"):
        Scorer(tmp_path / "b")
    make_bundle(tmp_path / "c")
    (tmp_path / "c" / "extra.bin").write_bytes(b"x")
    with pytest.raises(B.BundleError, match="not listed"):
        Scorer(tmp_path / "c")


def test_bad_manifest_policy_and_bad_inputs_are_clear(tmp_path, synth_bundle, monkeypatch):
    import json

    make_bundle(tmp_path / "b")
    m = json.loads((tmp_path / "b" / B.MANIFEST).read_text())
    del m["tokenizer"]["pad_id"]
    m.pop("files")
    B.write_manifest(tmp_path / "b", {k: v for k, v in m.items() if k not in ("format", "format_version")})
    with pytest.raises(B.BundleError, match="pad_id"):
        Scorer(tmp_path / "b")
    s = Scorer(synth_bundle)
    with pytest.raises(GptquantError, match="#1 is float"):
        s.score(["w1", float("nan")])
    monkeypatch.setenv("GPTQUANT_THREADS", "many")
    with pytest.raises(GptquantError, match="GPTQUANT_THREADS"):
        Scorer(synth_bundle)
    monkeypatch.setenv("GPTQUANT_THREADS", "1")
    assert Scorer(synth_bundle).threads == 1
    assert Scorer(synth_bundle, threads=2).threads == 2


def test_load_model_exports_a_checkpoint_once_into_the_cache(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "gpt2"}')
    (ckpt / "model.safetensors").write_bytes(b"weights")
    calls = []

    def export_bundle(model_dir, out_dir, int8=False, **kw):
        calls.append((model_dir, int8))
        make_bundle(out_dir)

    fake = types.ModuleType("gptquant.lm.export")
    fake.export_bundle = export_bundle
    monkeypatch.setitem(sys.modules, "gptquant.lm.export", fake)
    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path / "cache"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torch" else find_spec(name, *a))

    with pytest.raises(GptquantError, match=r"not yet exported.*gptquant.load_model"):
        load_model(ckpt)  # the torch-free runtime never exports: it opens what was exported
    first = gptquant.load_model(ckpt, batch_size=4)
    second = gptquant.load_model(ckpt)
    assert calls == [(ckpt, True)]
    assert first.bundle_dir == second.bundle_dir and first.bundle_dir.parent == tmp_path / "cache" / "bundles"
    assert first.batch_size == 4
    assert load_model(ckpt).bundle_dir == first.bundle_dir  # now the runtime finds the exported bundle
    assert not [p for p in first.bundle_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    (ckpt / "model.safetensors").write_bytes(b"new weights")  # new weights, new cache entry
    assert gptquant.load_model(ckpt).bundle_dir != first.bundle_dir and len(calls) == 2
    (first.bundle_dir / B.MODEL_FILE).write_bytes(b"damaged")  # a damaged cache entry is exported again
    (ckpt / "model.safetensors").write_bytes(b"weights")
    assert gptquant.load_model(ckpt).bundle_dir == first.bundle_dir and len(calls) == 3


def test_load_model_without_torch_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path / "cache"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    with pytest.raises(MissingExtra, match=r"gptquant\[train\]"):
        gptquant.load_model(tmp_path)
    with pytest.raises(GptquantError, match="neither a gptquant bundle"):
        gptquant.load_model(tmp_path / "cache")


def test_synthetic_bundle_verifies_and_lists_contract_outputs(tmp_path):
    manifest = make_bundle(tmp_path / "b")
    assert B.verify_bundle(tmp_path / "b")["files"].keys() == {B.MODEL_FILE, B.TOKENIZER_FILE}
    assert set(B.TOKEN_OUTPUTS) <= set(manifest["outputs"])
    assert json.loads((tmp_path / "b" / B.MANIFEST).read_text())["labels"] == LABELS3
