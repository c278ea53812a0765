"""The feature contract (gptquant.runtime.columns): named columns made where their names are written,
in the order the scorer's rows and the bundle manifest promise, shared by the exporter's parity check."""
from __future__ import annotations

import numpy as np

from gptquant.runtime import columns as C


def outputs(rng, n=4, seq=7, vocab=50):
    lp = -rng.gamma(2.0, 1.0, size=(n, seq))
    return {"token_logprob": lp.astype(np.float32), "token_entropy": rng.gamma(2.0, 1.0, (n, seq)).astype(np.float32),
            "token_logprob_var": rng.gamma(1.0, 1.0, (n, seq)).astype(np.float32),
            "token_rank": rng.integers(1, vocab, (n, seq)).astype(np.int64)}


def test_token_statistics_are_named_in_the_promised_order_and_ignore_padding():
    rng = np.random.default_rng(0)
    out = outputs(rng)
    m = np.ones((4, 7), dtype=bool)
    m[1, 3:] = False  # a shorter text
    m[2, :] = False  # nothing predicted: undefined, not zero
    stats = C.token_statistics(out, m)
    assert list(stats) == C.STAT_COLUMNS and C.STAT_COLUMNS[: len(C.BASE_FEATURES)] == list(C.BASE_FEATURES)
    assert stats["n_tokens"].tolist() == [7, 3, 0, 7]
    np.testing.assert_allclose(stats["nll_mean"][1], -out["token_logprob"][1, :3].astype(np.float64).mean())
    np.testing.assert_allclose(stats["ppl"], np.exp(stats["nll_mean"]))
    assert np.isnan(stats["nll_mean"][2]) and np.isnan(stats["fast_detect"][2])
    garbage = {k: v.copy() for k, v in out.items()}
    garbage["token_logprob"][1, 3:] = -1e6  # what padded positions hold must not matter
    garbage["token_rank"][1, 3:] = 10**6
    again = C.token_statistics(garbage, m)
    for name in C.STAT_COLUMNS:
        np.testing.assert_array_equal(again[name][1], stats[name][1])


def test_sentiment_columns_follow_the_label_names_and_sentiment_is_pos_minus_neg():
    logprob = np.log(np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]))
    stats = C.sentiment_statistics(["positive", "negative", "neutral"], logprob)  # not in neg, neu, pos order
    assert C.label_columns(["positive", "negative", "neutral"]) == ["sent_pos", "sent_neg", "sent_neu"]
    np.testing.assert_allclose(stats["sent_pos"], [0.2, 0.6])
    np.testing.assert_allclose(stats["sentiment"], [0.2 - 0.5, 0.6 - 0.1])
    assert C.feature_columns(False, ["a", "b", "c"]) == ["n_tokens", "truncated", "sent_neg", "sent_neu", "sent_pos",
                                                        "sentiment"]
    assert list(C.sentiment_statistics(["bear", "bull"], logprob[:, :2])) == ["sent_bear", "sent_bull"]
