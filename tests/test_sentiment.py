"""Sentiment heads: every method trains on a small slice, bakes into a bundle whose sent_* columns match
torch, resumes exactly, and the CLI trains and evaluates beside the TF-IDF baseline."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
import onnx  # noqa: E402

from gptquant import bundle as B  # noqa: E402
from gptquant.cli import main  # noqa: E402
from conftest import labelled  # noqa: E402
from gptquant.demo_world import LABELS  # noqa: E402
from gptquant.errors import GptquantError  # noqa: E402
from gptquant.lm import sentiment as S  # noqa: E402
from gptquant.lm import data, evaluate as E, headfile as H, heads  # noqa: E402
from gptquant.lm.export import export_bundle  # noqa: E402
from gptquant.runtime.scorer import Scorer  # noqa: E402


@pytest.fixture(scope="module")
def ptuned(tiny_checkpoint, data_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("pt") / "model"
    summary = S.train_sentiment(tiny_checkpoint, data_csv, out, "ptuning", steps=10, eval_every=5, batch=8,
                                max_length=40, progress=False)
    return out, summary


def test_linear_probe_learns_the_planted_signal(tiny_checkpoint, data_csv, tmp_path):
    s = S.train_sentiment(tiny_checkpoint, data_csv, tmp_path / "m", "linear", valid_frac=0.3, progress=False)
    assert s["validation"]["accuracy"] > 0.6  # chance is ~0.33
    assert s["baseline_validation"]["n"] == s["validation"]["n"]  # the baseline saw the same split
    meta = json.loads((tmp_path / "m" / H.HEAD_JSON).read_text())
    assert meta["method"] == "linear" and meta["temperature"] > 0
    # in the bundle the probe reads the feature pass's hidden states; same probabilities as torch
    export_bundle(tmp_path / "m", tmp_path / "b", max_length=48, exporter="torchscript", optimize="off")
    texts = labelled(10, seed=7)["text"].tolist()
    got = Scorer(tmp_path / "b").score(texts)[["sent_neg", "sent_neu", "sent_pos"]].to_numpy()
    np.testing.assert_allclose(got, E.predict_probs(tmp_path / "m", texts, max_length=48)[0], atol=1e-4)


def test_ptuned_prompt_is_baked_and_the_bundle_matches_torch(ptuned, tmp_path):
    out, summary = ptuned
    meta = json.loads((out / H.HEAD_JSON).read_text())
    from gptquant.lm.checkpoint import load_checkpoint

    vocab = load_checkpoint(out, with_model=False).tokenizer.get_vocab()
    words = list(meta["verbalizers"].values())  # this tiny vocabulary lacks 平/涨, so they were searched for
    assert len(set(words)) == 3 and all(w in vocab for w in words)
    assert meta["verbalizer_ids"] == [vocab[w] for w in words]
    bundle = tmp_path / "b"
    manifest = export_bundle(out, bundle, max_length=48, exporter="torchscript", optimize="off")
    assert manifest["labels"] == list(LABELS) and manifest["heads"]["sentiment"]["method"] == "ptuning"
    graph = onnx.load(str(bundle / B.MODEL_FILE))
    assert [i.name for i in graph.graph.input] == list(B.INPUTS)
    assert not [n for n in graph.graph.node if n.op_type == "LSTM"], "the prompt encoder must not be in the graph"
    texts = labelled(12, seed=5)["text"].tolist() + ["短"]
    df = Scorer(bundle).score(texts)
    got = df[["sent_neg", "sent_neu", "sent_pos"]].to_numpy()
    ref, labels = E.predict_probs(out, texts, max_length=48)
    assert labels == list(LABELS)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(df["sentiment"], got[:, 2] - got[:, 0], atol=1e-9)


def test_ptuning_padding_does_not_change_a_text_s_prediction(ptuned, tiny_checkpoint):
    out, _ = ptuned
    head, meta = H.load_head(out)
    from gptquant.lm.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out)
    ids = heads.encode_ids(ckpt, ["公司公告，拟回购股份。", "董事会审议通过年度报告，净利润同比增长百分之二十。" * 2], 40)
    alone = heads.head_logits(head, ids[:1], ckpt.policy.pad_id)
    batched = heads.head_logits(head, ids, ckpt.policy.pad_id)
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)


def test_interrupted_training_resumes_to_the_same_weights(tiny_checkpoint, data_csv, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    kw = dict(steps=10, eval_every=5, batch=8, max_length=40, progress=False, baseline=False)
    S.train_sentiment(tiny_checkpoint, data_csv, tmp_path / "whole", "ptuning", **kw)
    real, calls = S.M.classification_report, []

    def crash_on_second_eval(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(S.M, "classification_report", crash_on_second_eval)
    with pytest.raises(KeyboardInterrupt):
        S.train_sentiment(tiny_checkpoint, data_csv, tmp_path / "resumed", "ptuning", **kw)
    assert (tmp_path / "resumed" / S.STATE_FILE).is_file()
    monkeypatch.setattr(S.M, "classification_report", real)
    S.train_sentiment(tiny_checkpoint, data_csv, tmp_path / "resumed", "ptuning", **kw)
    assert not (tmp_path / "resumed" / S.STATE_FILE).exists()
    a, b = load_file(str(tmp_path / "whole" / H.HEAD_WEIGHTS)), load_file(str(tmp_path / "resumed" / H.HEAD_WEIGHTS))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6, err_msg=k)


def test_finetune_trains_its_own_copy_and_keeps_the_base_lm_features(tiny_checkpoint, tiny_bundle, data_csv, tmp_path):
    out = tmp_path / "ft"
    S.train_sentiment(tiny_checkpoint, data_csv, out, "finetune", steps=6, eval_every=3, batch=8, max_length=40,
                      progress=False)
    head, meta = H.load_head(out)
    from gptquant.lm.checkpoint import load_checkpoint

    base = load_checkpoint(tiny_checkpoint).model.transformer.state_dict()
    tuned = head.body.state_dict()
    assert any(not np.allclose(base[k].numpy(), tuned[k].numpy()) for k in base if k in tuned), "body never trained"
    export_bundle(out, tmp_path / "b", max_length=48, exporter="torchscript", optimize="off")
    texts = labelled(8, seed=9)["text"].tolist()
    ft, plain = Scorer(tmp_path / "b").score(texts), Scorer(tiny_bundle).score(texts)
    np.testing.assert_allclose(ft["nll_mean"], plain["nll_mean"], atol=1e-5)
    assert {"sent_neg", "sent_neu", "sent_pos", "sentiment"} <= set(ft.columns)


def test_few_shot_samples_k_rows_per_class(tiny_checkpoint, data_csv, tmp_path):
    S.train_sentiment(tiny_checkpoint, data_csv, tmp_path / "m", "linear", shots=4, progress=False)
    meta = json.loads((tmp_path / "m" / H.HEAD_JSON).read_text())
    assert meta["n_train"] == 12 and meta["n_valid"] == 12 and meta["shots"] == 4


def test_label_names_are_the_user_s_in_a_known_or_given_order(tmp_path):
    df = labelled(30, names=("利好", "中性", "利空"))  # written positive-first on purpose
    texts, y, labels = data.read_labelled(df)
    assert labels == ["利空", "中性", "利好"]
    assert [labels[k] for k in y] == df["label"].tolist()
    odd = df.assign(label=df["label"].map({"利好": "bull", "中性": "meh", "利空": "bear"}))
    with pytest.raises(GptquantError, match="--labels"):
        data.read_labelled(odd)
    assert data.read_labelled(odd, labels=["bear", "meh", "bull"])[2] == ["bear", "meh", "bull"]
    broken = df.copy()
    broken.loc[2, "label"] = ""
    with pytest.raises(GptquantError, match="row 3"):
        data.read_labelled(broken)


def test_aspect_term_goes_into_the_input():
    df = pd.DataFrame({"sentence": ["甲公司涨停，乙公司跌停。"] * 2, "term": ["甲公司", "乙公司"],
                       "label": ["positive", "negative"]})
    texts, _, _ = data.read_labelled(df)
    assert texts == ["甲公司：甲公司涨停，乙公司跌停。", "乙公司：甲公司涨停，乙公司跌停。"]


def test_cli_trains_then_evaluates_beside_the_baseline(tiny_checkpoint, data_csv, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "sentiment", "--model", str(tiny_checkpoint), "--data", str(data_csv), "--out", str(out),
                 "--method", "linear"]) == 0
    test = tmp_path / "test.csv"
    labelled(40, seed=3).to_csv(test, index=False)
    capsys.readouterr()
    report = tmp_path / "r.json"
    assert main(["eval", "sentiment", str(out), str(test), "--json", str(report)]) == 0
    text = capsys.readouterr().out
    assert "m (linear)" in text and "tfidf baseline" in text and "macroF1" in text
    r = json.loads(report.read_text())
    assert {k: v["n"] for k, v in r.items()} == {"m (linear)": 40, "m (tfidf baseline)": 40}
    assert main(["train", "sentiment", "--model", str(tiny_checkpoint), "--data", str(data_csv), "--out",
                 str(tmp_path / "x"), "--method", "ptuning", "--verbalizer", "negative=跌"]) == 2  # a label without a token


def test_tfidf_baseline_tunes_class_weighting_on_skewed_labels(monkeypatch):
    """The baseline every head is reported beside is tuned as a quant would tune it: on skewed labels,
    choosing the class weighting on validation beats tuning C alone."""
    from gptquant.lm import baseline as B
    from gptquant.lm import metrics as M

    rng = np.random.default_rng(0)
    words = {0: "跌亏崩", 1: "涨赚好"}

    def rows(n, p_pos):
        y = (rng.random(n) < p_pos).astype(int)
        noise = lambda: "".join(rng.choice(list("的了是在股票市场今天公司"), 6))  # noqa: E731
        return [noise() + (rng.choice(list(words[k])) if rng.random() < 0.6 else "") + noise() for k in y], y

    (tx, ty), (vx, vy) = rows(400, 0.9), rows(200, 0.9)
    f1 = lambda b: M.classification_report(vy, np.exp(M.log_softmax(b.logits(vx))), ["neg", "pos"])["macro_f1"]  # noqa: E731
    tuned = f1(B.train_baseline(tx, ty, ["neg", "pos"], vx, vy))
    monkeypatch.setattr(B, "CLASS_WEIGHTS", (None,))
    plain = f1(B.train_baseline(tx, ty, ["neg", "pos"], vx, vy))
    assert tuned > plain


def test_tfidf_baseline_keeps_its_chosen_term_weighting_through_save_and_load(monkeypatch, tmp_path):
    """Raw or sublinear tf is tuned too; a saved baseline scores as it was chosen, not with the default."""
    from gptquant.lm import baseline as B

    texts = ["股价大涨" * (1 + i % 4) + "公司" for i in range(30)] + ["股价大跌" * (1 + i % 3) for i in range(30)]
    y = np.array([1] * 30 + [0] * 30)
    monkeypatch.setattr(B, "SUBLINEAR", (False,))
    base = B.train_baseline(texts, y, ["neg", "pos"], texts[::3], y[::3])
    assert base.vectorizer.sublinear_tf is False
    base.save(tmp_path / "b.json")
    again = B.Baseline.load(tmp_path / "b.json")
    assert again.vectorizer.sublinear_tf is False
    np.testing.assert_allclose(again.logits(texts), base.logits(texts), atol=1e-12)


def test_aspect_rows_of_one_sentence_stay_on_one_side_of_the_validation_split():
    """CFSC-style data (one sentence, several terms, one label each): no sentence is both trained on and
    validated on, or every setting chosen on validation would favour memorising sentences."""
    import pandas as pd

    from gptquant.lm.sentiment import _splits

    rng = np.random.default_rng(0)
    rows = [{"sentence": f"第{i}条：公司公告业绩变化", "term": f"公司{j}", "label": ["negative", "neutral", "positive"][int(k)]}
            for i in range(80) for j, k in enumerate(rng.integers(0, 3, int(rng.integers(1, 4))))]
    tr, _, va, vy, labels = _splits(pd.DataFrame(rows), None, 0.2, None, 0, (None, None, None), None)
    sentence = lambda t: t.split("：", 1)[1]  # noqa: E731  (inputs are "term：sentence")
    assert not {sentence(t) for t in tr} & {sentence(t) for t in va}
    assert 0.1 < len(va) / len(rows) < 0.35 and set(vy) == {0, 1, 2}
