"""The hybrid sentiment head: its numpy scoring reproduces the scikit-learn model it was fitted as, its
files are checked on load, and (with torch) it trains, exports into a bundle, scores without torch to the
checkpoint's probabilities, and a tampered weight file is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gptquant.errors import GptquantError
from gptquant.runtime.hybrid import HybridHead, log_softmax, ngram_rows

from conftest import labelled

LABELS = ["negative", "neutral", "positive"]


def test_ngrams_count_every_1_to_3_gram_and_equal_grams_share_a_bucket():
    ids = [101, 7, 8, 7, 8, 9]
    buckets, counts = ngram_rows(ids, 3, 1 << 18)
    assert counts.sum() == 6 + 5 + 4  # 1-, 2- and 3-grams of six ids
    b7, _ = ngram_rows([7], 1, 1 << 18)
    b78, c78 = ngram_rows([7, 8], 2, 1 << 18)
    assert counts[np.searchsorted(buckets, b7[0])] == 2  # "7" occurs twice
    bigram = np.setdiff1d(b78, ngram_rows([7], 1, 1 << 18)[0])
    bigram = np.setdiff1d(bigram, ngram_rows([8], 1, 1 << 18)[0])
    assert counts[np.searchsorted(buckets, bigram[0])] == 2  # so does "7 8"
    assert not np.array_equal(ngram_rows([7, 8], 2, 1 << 18)[0], ngram_rows([8, 7], 2, 1 << 18)[0])  # order matters


ASPECT = {"sep": 50, "skip": 1, "window": 2}  # "term：text" with [CLS] first, the separator token 50


def test_aspect_input_masks_the_term_and_takes_a_window_either_side():
    from gptquant.runtime.hybrid import ASPECT_MARK, aspect_parts

    m = ASPECT_MARK
    # [CLS] 7 8 ： 1 2 7 8 3 4 5 7 8 6
    masked, windows = aspect_parts([101, 7, 8, 50, 1, 2, 7, 8, 3, 4, 5, 7, 8, 6], ASPECT)
    assert masked.tolist() == [1, 2, m, 3, 4, 5, m, 6]
    assert [w.tolist() for w in windows] == [[1, 2, m, 3, 4], [4, 5, m, 6]]
    # input that is not "term：text" keeps its own n-grams
    for ids in ([101, 1, 2, 3], [101, 50, 1, 2], [101, 9, 50, 1, 2]):
        assert aspect_parts(ids, ASPECT)[1] == [] and ngram_rows(ids, 3, 1 << 18, ASPECT)[0].tolist() == \
            ngram_rows(ids, 3, 1 << 18)[0].tolist()


def test_aspect_ngrams_tell_two_terms_of_one_sentence_apart_and_carry_over_to_new_terms():
    sentence = [1, 2, 7, 3, 4, 5, 6, 8, 9]  # "... 7 rises ... 8 falls"
    grams = lambda ids, aspect=None: set(ngram_rows(ids, 3, 1 << 18, aspect)[0].tolist())  # noqa: E731
    a, b = grams([101, 7, 50] + sentence, ASPECT), grams([101, 8, 50] + sentence, ASPECT)
    plain_a, plain_b = grams([101, 7, 50] + sentence), grams([101, 8, 50] + sentence)
    # without the aspect view the two rows differ only in the n-grams that touch the term before "："
    assert plain_a ^ plain_b <= grams([101, 7, 50, 1, 2]) | grams([101, 8, 50, 1, 2])
    assert len(a ^ b) > len(plain_a ^ plain_b)  # with it, what surrounds each term tells them apart
    other = [1, 2, 70, 3, 4, 5, 6, 8, 9]  # the same sentence about another company, token 70
    assert a == grams([101, 70, 50] + other, ASPECT)  # the term itself is masked: what is learnt carries over


def test_aspect_view_learns_which_term_the_label_is_about():
    """Sentences naming two companies, one next to a rising word and one next to a falling word, labelled
    per company: the plain n-grams of both rows are the same, the aspect view separates them; the
    numpy scoring still equals the scikit-learn fit."""
    from gptquant.lm.hybrid import fit_hybrid

    def rows(n, seed):
        rng = np.random.default_rng(seed)
        ids, y = [], []
        for _ in range(n):
            a, b = rng.choice(np.arange(200, 260), 2, replace=False)
            filler = rng.integers(300, 340, 6).tolist()
            sent = filler[:3] + [int(a), 11] + filler[3:] + [int(b), 12] + [1, 2]  # 11 rises, 12 falls
            for term, label in ((a, 1), (b, 0)):
                ids.append([101, int(term), 50] + sent)
                y.append(label)
        return ids, np.zeros((len(y), 1)), np.array(y)

    ids, dense, y = rows(120, 0)
    vids, vdense, vy = rows(60, 1)
    labels = ["down", "up"]
    plain, _ = fit_hybrid(ids, dense, y, vids, vdense, vy, labels, [("stats", 1)], dim=1 << 12)
    head, info = fit_hybrid(ids, dense, y, vids, vdense, vy, labels, [("stats", 1)], dim=1 << 12, aspect=ASPECT)
    acc = lambda h: (h.logprobs(vids, vdense).argmax(1) == vy).mean()  # noqa: E731
    assert acc(plain) < 0.7 and acc(head) > 0.95, (acc(plain), acc(head))
    np.testing.assert_allclose(log_softmax(head.main_logits(vids, vdense)), info["sklearn_val_logprobs"], atol=1e-9)
    assert head.spec["ngram"]["aspect"] == ASPECT


def test_aspect_rows_are_recognised_and_bad_aspect_settings_refused():
    from gptquant.lm.data import is_aspect_input
    from gptquant.runtime.hybrid import check_spec

    assert is_aspect_input(["茅台：茅台涨停", "五粮液：白酒股中五粮液领跌"])
    assert not is_aspect_input(["今天大涨", "公告：公司拟回购"])  # a colon alone is not a term
    spec = {"kind": "hybrid-ngram-gpt-logreg", "labels": LABELS, "dense": [], "temperature": 1.0,
            "ngram": {"n_max": 3, "dim": 8, "max_tokens": 16, "aspect": {"sep": 50, "skip": 1, "window": 0}}}
    with pytest.raises(GptquantError, match="ngram.aspect"):
        check_spec(spec, "hybrid.json")


def _synthetic(n, seed):
    """Token ids whose n-grams and a dense block both carry the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    ids = [[101] + rng.integers(200, 260, 8).tolist() + [300 + int(k)] * int(rng.integers(0, 2)) for k in y]
    dense = rng.normal(size=(n, 6)) + np.eye(3)[y].repeat(2, axis=1) * 0.8
    return ids, dense, y


@pytest.fixture(scope="module")
def fitted():
    pytest.importorskip("sklearn")
    from gptquant.lm import hybrid as H

    ids, dense, y = _synthetic(240, 0)
    vids, vdense, vy = _synthetic(90, 1)
    mp = pytest.MonkeyPatch()
    mp.setattr(H, "NB_W", (1.0,))  # the NB-LR view always in, so its files and scoring are exercised
    head, info = H.fit_hybrid(ids, dense, y, vids, vdense, vy, LABELS, [("pooled", 6)], dim=1 << 12)
    mp.undo()
    assert head.spec["nb"]["weight"] == 1.0
    return head, info, vids, vdense, vy


def test_numpy_scoring_equals_the_fitted_scikit_learn_model(fitted):
    head, info, vids, vdense, vy = fitted
    np.testing.assert_allclose(log_softmax(head.main_logits(vids, vdense)), info["sklearn_val_logprobs"], atol=1e-9)
    # both views from token ids in the runtime's loop equal the training path's sparse matrices
    np.testing.assert_allclose(head.logits(vids, vdense), info["val_logits"], atol=1e-9)
    assert info["validation"]["macro_f1"] > 0.6  # the planted signal is found (chance ~0.33)
    p = np.exp(head.logprobs(vids, vdense))
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)


def test_two_labels_fit_and_score_like_scikit_learn():
    """A binary task (FinNSP: negative / not negative) trains and scores: scikit-learn keeps one row of
    coefficients for two classes, the head keeps both."""
    from gptquant.lm.hybrid import fit_hybrid

    def binary(n, seed):
        ids, dense, y = _synthetic(n, seed)
        keep = y < 2
        return [i for i, k in zip(ids, keep) if k], dense[keep], y[keep]

    ids, dense, y = binary(240, 0)
    vids, vdense, vy = binary(120, 1)
    head, info = fit_hybrid(ids, dense, y, vids, vdense, vy, LABELS[:2], [("pooled", 6)], dim=1 << 12)
    np.testing.assert_allclose(log_softmax(head.main_logits(vids, vdense)), info["sklearn_val_logprobs"], atol=1e-9)
    np.testing.assert_allclose(head.logits(vids, vdense), info["val_logits"], atol=1e-9)
    assert head.logprobs(vids, vdense).shape == (len(vy), 2) and info["validation"]["macro_f1"] > 0.6


def test_saved_head_loads_back_and_bad_files_are_refused(fitted, tmp_path):
    head, _, vids, vdense, _ = fitted
    names = head.save(tmp_path)
    assert all(n.endswith((".npy", ".json")) for n in names)
    again = HybridHead.load(tmp_path)
    np.testing.assert_array_equal(again.logprobs(vids, vdense), head.logprobs(vids, vdense))
    np.save(tmp_path / "hybrid_stack_coef.npy", np.zeros((2, 2)))
    with pytest.raises(GptquantError, match="hybrid_stack_coef.npy.*shape"):
        HybridHead.load(tmp_path)
    np.save(tmp_path / "hybrid_stack_coef.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GptquantError, match="hybrid_stack_coef.npy"):
        HybridHead.load(tmp_path)  # an object (pickled) array is never loaded
    spec = json.loads((tmp_path / "hybrid.json").read_text())
    (tmp_path / "hybrid.json").write_text(json.dumps({**spec, "temperature": -1}))
    with pytest.raises(GptquantError, match="temperature"):
        HybridHead.load(tmp_path)
    head.save(tmp_path)  # whole again
    (tmp_path / "hybrid.json").write_text(json.dumps({**spec, "nb": {"C": 1.0, "weight": 0}}))
    with pytest.raises(GptquantError, match="'nb' must hold a positive 'weight'"):
        HybridHead.load(tmp_path)
    (tmp_path / "hybrid.json").write_text(json.dumps(spec))
    (tmp_path / "hybrid_nb_coef.npy").unlink()
    with pytest.raises(GptquantError, match="hybrid_nb_coef.npy"):
        HybridHead.load(tmp_path)  # a head that says it has the NB view needs its weights


def test_nb_view_is_scikit_learn_nb_lr_folded_onto_ngram_presence():
    """The stored [k, dim] coefficients on 0/1 n-grams give the logits of the per-class scikit-learn
    regressions on presence x naive-Bayes ratios, the model as Wang & Manning fit it."""
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    from gptquant.lm.hybrid import fit_nb, nb_ratios
    from gptquant.runtime.hybrid import ngram_matrix

    def presence(ids):
        rows, cols, _ = ngram_matrix(ids, 3, 1 << 12)
        return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), 1 << 12))

    ids, _, y = _synthetic(240, 0)
    vids, _, _ = _synthetic(60, 1)
    p, pv = presence(ids), presence(vids)
    coef, intercept = fit_nb(p, y, 3, C=0.3)
    r = nb_ratios(p, y, 3)
    for c in range(3):
        sk = LogisticRegression(C=0.3, max_iter=3000, class_weight="balanced").fit(p.multiply(r[c]).tocsr(), y == c)
        np.testing.assert_allclose(pv @ coef[c] + intercept[c], sk.decision_function(pv.multiply(r[c]).tocsr()),
                                   atol=1e-8)
    assert (np.asarray(pv @ coef.T + intercept).argmax(1) == _synthetic(60, 1)[2]).mean() > 0.6


def test_refit_learns_from_the_validation_rows_too(fitted):
    """The settings chosen on validation are fitted again on training + validation rows: an n-gram seen
    only in the validation rows then counts, while the settings and the calibration stay the validated ones."""
    from gptquant.lm.hybrid import refit_hybrid

    head, _, vids, vdense, vy = fitted
    ids, dense, y = _synthetic(240, 0)
    marked = [list(s) + [999] if k == 0 else list(s) for s, k in zip(vids, vy)]  # token 999: only in validation
    again = refit_hybrid(head, ids + marked, np.vstack([dense, vdense]), np.concatenate([y, vy]))
    probe = [[101, 999]]
    zero = np.zeros((1, 6))
    assert again.logprobs(probe, zero)[0, 0] > head.logprobs(probe, zero)[0, 0] + 0.1
    assert again.logprobs(probe, zero)[0].argmax() == 0
    assert again.spec["refit_rows"] == len(y) + len(vy)
    assert {k: again.spec[k] for k in ("C", "gpt_weight", "probe_C", "nb", "temperature")} == \
        {k: head.spec[k] for k in ("C", "gpt_weight", "probe_C", "nb", "temperature")}


def test_dense_features_of_another_width_are_refused(fitted):
    head = fitted[0]
    with pytest.raises(GptquantError, match="'pooled' is 5 wide"):
        head.dense_matrix({"pooled": np.zeros((2, 5))}, 2)
    with pytest.raises(GptquantError, match="needs the 'pooled'"):
        head.dense_matrix({}, 2)


# ---- end to end with torch: train -> checkpoint -> bundle -> torch-free scoring ---------------------

@pytest.fixture(scope="module")
def hybrid_ckpt(tiny_checkpoint, tmp_path_factory):
    pytest.importorskip("torch")
    from gptquant.lm import hybrid as H

    mp = pytest.MonkeyPatch()
    mp.setattr(H, "W_GRID", (1.0,))  # the GPT block always in, so the bundle's GPT features must match torch's
    from gptquant.lm import sentiment as S

    root = tmp_path_factory.mktemp("hybrid")
    labelled(150).to_csv(root / "train.csv", index=False)
    s = S.train_sentiment(tiny_checkpoint, root / "train.csv", root / "model", "hybrid", valid_frac=0.3, progress=False)
    mp.undo()
    assert json.loads((root / "model" / "hybrid.json").read_text())["gpt_weight"] == 1.0
    return root / "model", s


def test_hybrid_trains_exports_and_scores_like_the_checkpoint(hybrid_ckpt, tmp_path, capsys):
    from gptquant import bundle as B
    from gptquant.cli import main
    from gptquant.lm.evaluate import predict_probs
    from gptquant.lm.export import export_bundle
    from gptquant.runtime.scorer import Scorer

    model, summary = hybrid_ckpt
    assert summary["method"] == "hybrid" and summary["validation"]["accuracy"] > 0.6  # chance ~0.33
    texts = labelled(12, seed=9)["text"].tolist()
    want, labels = predict_probs(model, texts)  # torch features + the numpy head
    for precision in ("fp32", "int8"):
        out = tmp_path / precision
        loose = {"sent_prob_max_abs": 0.2, "sent_label_agreement": 0.9}  # int8 of a 2x64 model is coarse
        manifest = export_bundle(model, out, int8=precision == "int8", exporter="torchscript",
                                 parity_limits=loose if precision == "int8" else None)
        assert manifest["heads"]["sentiment"]["method"] == "hybrid" and manifest["labels"] == labels
        assert {"hybrid.json", "hybrid_ngram_coef.npy"} <= set(manifest["files"])  # hashed like the graph
        assert "sent_prob_max_abs" in manifest["parity"][precision]
        stored = json.loads((model / "gptquant_sentiment.json").read_text())["parity_texts"]
        assert len(stored) > 0 and manifest["parity"]["texts"] == 16 + len(stored)  # the head's own validation texts
        got = Scorer(out).score(texts)
        probs = got[["sent_neg", "sent_neu", "sent_pos"]].to_numpy()
        # fp32: onnxruntime's hidden states differ from torch's by float rounding only (measured 6e-5 after
        # standardisation on this 2x64 model); the numpy head itself equals scikit-learn to 1e-9 (above)
        np.testing.assert_allclose(probs, want, atol=2e-4 if precision == "fp32" else 0.2)
        np.testing.assert_allclose(got["sentiment"], probs[:, 2] - probs[:, 0])
    with pytest.raises(GptquantError, match="int8 bundle refused.*sent_prob_max_abs"):
        export_bundle(model, tmp_path / "strict", int8=True, exporter="torchscript",
                      parity_limits={"sent_prob_max_abs": 1e-12})  # the gate reads the hybrid's probabilities
    assert not (tmp_path / "strict").exists()
    assert main(["model", "info", str(tmp_path / "fp32")]) == 0
    assert "hybrid" in capsys.readouterr().out
    coef = tmp_path / "fp32" / "hybrid_ngram_coef.npy"
    arr = np.load(coef)
    arr[0, int(np.argmax(np.abs(arr[0])))] *= -1
    coef.chmod(0o644)
    np.save(coef, arr)
    with pytest.raises(B.BundleError, match="hybrid_ngram_coef.npy: sha256 mismatch"):
        Scorer(tmp_path / "fp32")


def test_aspect_rows_train_a_head_that_scores_term_text_in_the_bundle_like_the_checkpoint(tiny_checkpoint, tmp_path,
                                                                                         capsys):
    """A table with a term column trains the aspect view (the spec says so, with the bundle tokenizer's
    separator id), and the torch-free bundle gives the checkpoint's probabilities on "term：text"."""
    from gptquant.lm import sentiment as S
    from gptquant.lm.evaluate import predict_probs
    from gptquant.lm.export import export_bundle
    from gptquant.runtime.scorer import Scorer

    df = labelled(120, seed=4)
    df["term"] = [t[:5] for t in df["text"]]  # the company name the article opens with
    df.to_csv(tmp_path / "aspect.csv", index=False)
    S.train_sentiment(tiny_checkpoint, tmp_path / "aspect.csv", tmp_path / "model", "hybrid", valid_frac=0.3,
                      progress=False)
    aspect = json.loads((tmp_path / "model" / "hybrid.json").read_text())["ngram"]["aspect"]
    texts = [f"{t[:5]}：{t}" for t in labelled(8, seed=9)["text"]]
    want, _ = predict_probs(tmp_path / "model", texts)
    manifest = export_bundle(tmp_path / "model", tmp_path / "bundle", int8=False, exporter="torchscript")
    assert manifest["heads"]["sentiment"]["input"] == "term：text"  # model info tells the user the input form
    got = Scorer(tmp_path / "bundle").score(texts)[["sent_neg", "sent_neu", "sent_pos"]].to_numpy()
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert aspect["window"] > 0 and aspect["skip"] in (0, 1)
    from gptquant.cli import main

    assert main(["model", "info", str(tmp_path / "bundle")]) == 0
    assert "input      term：text" in capsys.readouterr().out
