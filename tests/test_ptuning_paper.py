"""P-tuning as "GPT Understands, Too" does it: anchor words fixed in the template (saved with the head,
baked into the bundle with torch parity) and label words searched on validation, never on test rows."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from conftest import labelled  # noqa: E402
from gptquant.cli import main  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.lm import evaluate as E, headfile as H, heads  # noqa: E402
from gptquant.lm import sentiment as S  # noqa: E402
from gptquant.lm.checkpoint import load_checkpoint  # noqa: E402
from gptquant.lm.export import export_bundle  # noqa: E402
from gptquant.runtime.scorer import Scorer  # noqa: E402

ANCHOR = "公司公告"
KW = dict(steps=10, eval_every=5, batch=8, max_length=40, progress=False, baseline=False)


@pytest.fixture(scope="module")
def anchored(tiny_checkpoint, data_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("anchored") / "model"
    S.train_sentiment(tiny_checkpoint, data_csv, out, "ptuning", anchor=ANCHOR, n_prefix=2, n_suffix=2, **KW)
    return out


def test_the_anchor_is_saved_with_the_head_and_its_words_sit_in_the_template(anchored):
    meta = json.loads((anchored / H.HEAD_JSON).read_text())
    ckpt = load_checkpoint(anchored)
    expect = ckpt.tokenizer.encode(ANCHOR, add_special_tokens=False).ids
    assert meta["anchor"] == ANCHOR and meta["anchor_ids"] == expect
    head, _ = H.load_head(anchored, ckpt)
    assert head.anchor_ids.tolist() == expect
    assert head.max_text == ckpt.config["n_positions"] - 2 - 2 - len(expect)  # the anchor takes positions
    # fixed words: the anchor is the LM's own embeddings, not a trained or saved tensor
    assert not [k for k in heads.own_state(head) if "anchor" in k]
    ids = heads.encode_ids(ckpt, labelled(8, seed=3)["text"].tolist(), 40)
    with_anchor = heads.head_logits(head, ids, ckpt.policy.pad_id)
    head.anchor_ids = head.anchor_ids[:0]
    without = heads.head_logits(head, ids, ckpt.policy.pad_id)
    assert np.abs(with_anchor - without).max() > 1e-3  # the readout sees the anchor words


@pytest.mark.parametrize("int8", [False, True])
def test_an_anchored_head_bakes_into_a_bundle_that_matches_torch(anchored, tmp_path, int8):
    bundle = tmp_path / "b"
    manifest = export_bundle(anchored, bundle, int8=int8, max_length=48, exporter="torchscript", optimize="off")
    assert manifest["heads"]["sentiment"]["anchor"] == ANCHOR
    texts = labelled(12, seed=5)["text"].tolist() + ["短"]
    got = Scorer(bundle).score(texts)[["sent_neg", "sent_neu", "sent_pos"]].to_numpy()
    ref, _ = E.predict_probs(anchored, texts, max_length=48)
    if int8:  # refused above if outside the gate; here the gate's own figure on these texts
        limit = manifest["parity"]["limits"]["sent_prob_max_abs"]
        assert np.abs(got - ref).max() <= limit
    else:
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_an_anchor_that_tokenizes_to_nothing_is_refused(tiny_checkpoint, data_csv, tmp_path):
    with pytest.raises(GptquantError, match="--anchor"):
        S.train_sentiment(tiny_checkpoint, data_csv, tmp_path / "m", "ptuning", anchor="   ", **KW)
    assert main(["train", "sentiment", "--model", str(tiny_checkpoint), "--data", str(data_csv), "--out",
                 str(tmp_path / "x"), "--method", "ptuning", "--anchor", " "]) == 2


def test_searched_label_words_are_chosen_on_validation_and_recorded(tiny_checkpoint, data_csv, tmp_path):
    S.train_sentiment(tiny_checkpoint, data_csv, tmp_path / "m", "ptuning", verbalizers="search", **KW)
    meta = json.loads((tmp_path / "m" / H.HEAD_JSON).read_text())
    rec = meta["verbalizer_search"]
    words = list(meta["verbalizers"].values())
    assert rec["chosen"] == words and "/".join(words) == max(rec["scores"], key=rec["scores"].get)
    assert set(rec["candidates"]) == set(meta["labels"])
    assert all(w in rec["candidates"][lab] for lab, w in meta["verbalizers"].items())
    assert len(rec["scores"]) > 1 and all(0 <= f <= 1 for f in rec["scores"].values())
    assert rec["n_valid"] == meta["n_valid"]


def test_the_search_reads_validation_labels_and_never_test_rows(tiny_checkpoint, tmp_path, monkeypatch):
    from gptquant.lm import auto
    from gptquant.lm.label_search import search_verbalizers

    ckpt = load_checkpoint(tiny_checkpoint)
    train, valid = labelled(90, seed=1), labelled(45, seed=2)
    labels = sorted(set(train["label"]))
    y = lambda df: np.array([labels.index(v) for v in df["label"]])  # noqa: E731
    words, rec = search_verbalizers(ckpt, train["text"].tolist(), y(train), valid["text"].tolist(), y(valid), labels,
                                    max_length=40)
    shuffled = np.random.default_rng(0).permutation(y(valid))
    _, rec2 = search_verbalizers(ckpt, train["text"].tolist(), y(train), valid["text"].tolist(), shuffled, labels,
                                 max_length=40)
    assert rec2["scores"] != rec["scores"]  # the scores are validation figures
    # through auto with a --test table: permuting the test labels changes nothing that was chosen
    test = labelled(30, seed=9)
    test.to_csv(tmp_path / "test.csv", index=False)
    test.assign(label=np.random.default_rng(1).permutation(test["label"].to_numpy())).to_csv(tmp_path / "perm.csv",
                                                                                          index=False)
    pd.concat([train, valid]).to_csv(tmp_path / "train.csv", index=False)
    monkeypatch.setattr(auto, "budget", lambda *a: {"steps": 4, "eval_every": 2})  # the choice, not the training
    chosen = []
    for name in ("test.csv", "perm.csv"):
        S.train_sentiment(tiny_checkpoint, tmp_path / "train.csv", tmp_path / f"out-{name}", "auto", methods=["ptuning"],
                          verbalizers="search", test=tmp_path / name, max_length=40, progress=False, valid_frac=0.3)
        meta = json.loads((tmp_path / f"out-{name}" / H.HEAD_JSON).read_text())
        chosen.append((meta["verbalizers"], meta["verbalizer_search"]["scores"]))
    assert chosen[0] == chosen[1]
