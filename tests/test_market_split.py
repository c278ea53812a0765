"""`train sentiment --labels market`: market labels split by time (never at random), thresholds from the
training period only; and benchmarks/market_signal.py's Rank IC table."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import labelled, planted
from gptquant.cli import main
from gptquant.errors import GptquantError
from gptquant.lm.market_split import market_split, time_split

REPO = Path(__file__).resolve().parents[1]


def label_table(n=120, seed=0, valid_shift=0.05) -> pd.DataFrame:
    """A `label market`-shaped table over 2019-01..2019-12 in shuffled row order; the second half-year's excess
    returns are shifted by `valid_shift` (a different market regime)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2019-01-02", "2019-12-31")
    session = pd.Series(rng.choice(days, n)).sort_values(ignore_index=True)
    ex = rng.normal(0, 0.02, n) + np.where(session >= "2019-07-01", valid_shift, 0.0)
    df = pd.DataFrame({"session": session, "exit_session": session, "excess_return": ex,
                       "label": "neutral", "text": labelled(n, seed)["text"]})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_validation_rows_never_precede_training_rows_and_later_rows_stay_out():
    df = label_table()
    tr, va, info = market_split(df, "2019-07-01", "2019-11-01")
    assert tr["session"].max() < pd.Timestamp("2019-07-01") <= va["session"].min()
    assert va["session"].max() < pd.Timestamp("2019-11-01")
    later = int((df["session"] >= "2019-11-01").sum())
    assert info["n_after"] == later > 0 and info["n_train"] + info["n_valid"] + later == len(df)


def test_thresholds_come_from_the_training_rows_only():
    df = label_table()
    tr, va, info = market_split(df, "2019-07-01")
    train_ex = df.loc[df["session"] < "2019-07-01", "excess_return"]
    assert (info["down"], info["up"]) == pytest.approx(tuple(np.quantile(train_ex, [1 / 3, 2 / 3])))
    assert set(tr["label"].value_counts()) <= {len(tr) // 3, len(tr) // 3 + 1}  # terciles of the training rows
    # the validation period's returns (here shifted up 5 points) change neither the thresholds nor training labels
    _, va2, info2 = market_split(df.assign(excess_return=np.where(df["session"] >= "2019-07-01", -0.5, df["excess_return"])),
                                 "2019-07-01")
    assert (info2["down"], info2["up"]) == (info["down"], info["up"])
    assert (va["label"] == "positive").mean() > 0.9 and (va2["label"] == "negative").all()
    want = np.where(va["excess_return"] < info["down"], "negative", np.where(va["excess_return"] > info["up"], "positive", "neutral"))
    assert (va["label"] == want).all()


def test_a_training_label_that_needs_validation_prices_is_purged():
    df = pd.DataFrame({"session": ["2019-06-27", "2019-06-28", "2019-07-02"], "text": ["甲", "乙", "丙"],
                       "exit_session": ["2019-06-27", "2019-07-03", "2019-07-03"], "excess_return": [0.01, 0.02, 0.03]})
    tr, va, info = market_split(df, "2019-07-01")
    assert tr["text"].tolist() == ["甲"] and va["text"].tolist() == ["丙"] and info["n_purged"] == 1


def test_bad_rows_and_empty_sides_are_refused_by_name():
    df = label_table(30)
    with pytest.raises(GptquantError, match="row 3: unreadable 'session'"):
        market_split(df.assign(session=df["session"].astype(str).where(df.index != 2, "soon")), "2019-07-01")
    with pytest.raises(GptquantError, match="row 2: excess_return"):
        market_split(df.assign(excess_return=df["excess_return"].where(df.index != 1, np.nan)), "2019-07-01")
    with pytest.raises(GptquantError, match="0 training"):
        time_split(df, "2018-01-01")


def test_cli_trains_on_market_labels_split_by_time(tiny_checkpoint, tmp_path, capsys):
    df = label_table(90)
    df.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "head"
    args = ["train", "sentiment", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "labels.csv"),
            "--out", str(out), "--method", "linear", "--labels", "market"]
    assert main(args) == 2  # a market-labelled table is never split at random
    assert "--valid-from" in capsys.readouterr().err
    assert main(args + ["--valid-from", "2019-07-01", "--valid-until", "2019-11-01", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    split = json.loads((out / "market_split.json").read_text(encoding="utf-8"))
    meta = json.loads((out / "gptquant_sentiment.json").read_text(encoding="utf-8"))
    assert meta["labels"] == ["negative", "neutral", "positive"]
    assert (meta["n_train"], meta["n_valid"]) == (split["n_train"], split["n_valid"])
    assert split["n_train"] == int((df["session"] < "2019-07-01").sum())
    assert "thresholds from the training rows only" in printed and split["train_range"][1] < split["valid_range"][0]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("market_signal", REPO / "benchmarks" / "market_signal.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_table_reports_each_signal_s_rank_ic_with_its_sessions_and_names():
    from gptquant.analysis.factor import analyze

    panel, bars = planted(n_days=40, n_inst=12, strength=0.01)
    panel = panel.assign(noise=np.random.default_rng(1).normal(size=len(panel)))
    bench = load_benchmark()
    results = {c: analyze(panel, c, bars, horizons=(1, 5), quantiles=3) for c in ("s", "noise")}
    table = bench.signal_table(results)
    assert list(zip(table["signal"], table["horizon"])) == [("s", "1D"), ("s", "5D"), ("noise", "1D"), ("noise", "5D")]
    row = table.iloc[0]
    s = results["s"]["ic_summary"]["rank_ic"]["1D"]
    assert row["rank_ic"] == s["mean"] > 0.3 and row["t_stat"] == pytest.approx(s["icir"] * np.sqrt(s["n"]))
    assert row["t_every_h"] == pytest.approx(row["t_stat"])  # 1 session: no overlap to thin out
    ic5 = pd.Series(results["s"]["ic"]["rank_ic"]["5D"]).sort_index().dropna().iloc[::5]
    assert table.iloc[1]["t_every_h"] == pytest.approx(ic5.mean() / ic5.std() * np.sqrt(len(ic5)))
    assert abs(table.iloc[2]["rank_ic"]) < row["rank_ic"] / 3  # the planted signal, not noise, predicts returns
    assert row["names"] == 12 and row["sessions"] == s["n"]
    used = results["s"]["coverage"]
    assert row["names_per_session"] == pytest.approx(used["rows_used"] / used["sessions"]) and row["names_per_session"] <= 12
    assert row["q_spread"] > 0
    text = bench.format_table(table)
    assert text.count("\n") == 1 + len(table) and f"{row['rank_ic']:+.4f}" in text


def test_benchmark_article_table_correlates_each_score_with_its_own_article_s_excess_return():
    rng = np.random.default_rng(0)
    n = 60
    times = pd.date_range("2020-01-02 08:00", periods=n, freq="D")
    news = pd.DataFrame({"article_id": np.arange(1, n + 1), "datetime": times,
                         "instruments": [[f"{600000 + i:06d}.SH"] for i in range(n)]})
    ex = rng.normal(0, 0.02, n)
    labels = pd.DataFrame({"datetime": times.astype(str), "instrument": [f"{600000 + i:06d}.SH" for i in range(n)],
                           "excess_return": ex})
    labels = pd.concat([labels, labels.iloc[[0]].assign(excess_return=0.5)])  # an ambiguous pair: left out
    ids = news["article_id"].to_numpy()
    scores = {"right": pd.Series(ex, index=ids), "wrong": pd.Series(-ex, index=ids),
              "partial": pd.Series(ex[: n // 2], index=ids[: n // 2])}
    table = load_benchmark().article_table(scores, news, labels).set_index("signal")
    assert table.loc["right", "spearman"] == pytest.approx(1.0) and table.loc["wrong", "spearman"] == pytest.approx(-1.0)
    assert table.loc["right", "articles"] == n - 1 and table.loc["partial", "articles"] == n // 2 - 1
    top, bottom = np.sort(ex[1:])[-20:].mean(), np.sort(ex[1:])[:19].mean()  # 59 ranks: pct > 2/3 and <= 1/3
    assert table.loc["right", "t3_minus_t1"] == pytest.approx(top - bottom)


def test_time_split_keeps_a_labelled_table_s_own_labels():
    df = label_table(60).drop(columns=["session", "exit_session"]).assign(
        datetime=pd.date_range("2019-01-01", periods=60, freq="5D").astype(str), label=["利空", "中性", "利好"] * 20)
    tr, va, info = time_split(df, "2019-06-01", time_column="datetime")
    assert info["time_column"] == "datetime" and info["n_after"] == 0 and "down" not in info
    assert tr["datetime"].max() < pd.Timestamp("2019-06-01") <= va["datetime"].min()
    assert len(tr) + len(va) == len(df) and set(tr["label"]) == {"利空", "中性", "利好"}
    with pytest.raises(GptquantError, match="must come after"):
        time_split(df, "2019-06-01", "2019-05-01", time_column="datetime")
