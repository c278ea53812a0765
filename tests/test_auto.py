"""`train sentiment --method auto` (the default): every method on one split, the best by validation
macro-F1, one table beside TF-IDF stored in the checkpoint, reuse of finished methods, budgets."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from gptquant.cli import main  # noqa: E402
from gptquant.lm import sentiment as S  # noqa: E402
from gptquant.lm.headfile import HEAD_JSON  # noqa: E402
from conftest import labelled  # noqa: E402


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    labelled(150).to_csv(root / "train.csv", index=False)
    labelled(45, seed=5).to_csv(root / "test.csv", index=False)
    return root


def test_auto_is_the_default_and_keeps_the_best_method_by_validation(tiny_checkpoint, tables, capsys):
    out = tables / "m"
    assert main(["train", "sentiment", "--model", str(tiny_checkpoint), "--data", str(tables / "train.csv"),
                 "--out", str(out), "--test", str(tables / "test.csv"), "--max-length", "40", "--valid-frac", "0.3"]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / HEAD_JSON).read_text())
    table = meta["auto"]["table"]
    assert set(table) == {"linear", "hybrid", "finetune", "ptuning", "tfidf"}
    trained = {m: r["validation"]["macro_f1"] for m, r in table.items() if m != "tfidf"}
    assert meta["method"] == meta["auto"]["picked"] == max(trained, key=trained.get)
    assert all(r["test"]["n"] == 45 for r in table.values())  # test figures beside, never used to choose
    assert all(r["validation"]["n"] == table["tfidf"]["validation"]["n"] for r in table.values())  # one split
    assert all(m in printed for m in table) and "picked" in printed
    for m in ("finetune", "ptuning"):  # a data-size budget, stopping only when validation stops improving
        assert table[m]["steps_run"] > 0
    # the picked head is exported like any other
    assert main(["export", str(out), "--out", str(tables / "b"), "--max-length", "48"]) == 0
    # resumable: finished methods are reused, not retrained
    stamps = {p: p.stat().st_mtime_ns for p in (out / ".auto").rglob("*.json")}
    again = S.train_sentiment(tiny_checkpoint, tables / "train.csv", out, max_length=40, valid_frac=0.3, progress=False)
    assert again["method"] == meta["method"]
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / ".auto").rglob("*.json") if p in stamps}


def test_a_method_projected_past_its_budget_is_skipped_and_the_table_says_so(tiny_checkpoint, tables):
    s = S.train_sentiment(tiny_checkpoint, tables / "train.csv", tables / "tight", methods=["linear", "finetune"],
                          budget_minutes=1e-6, max_length=40, progress=False)
    assert s["method"] == "linear"
    assert "projected" in s["auto"]["table"]["finetune"]["skipped"]


def test_a_finished_method_is_trained_again_when_its_rows_or_settings_change(tiny_checkpoint, tables, tmp_path,
                                                                            monkeypatch):
    """Reuse is keyed: a head trained on other rows, with other settings or by other gptquant code is never
    passed off as this run's."""
    import pandas as pd

    from gptquant import codehash

    out = tmp_path / "m"
    kw = dict(methods=["linear"], valid_frac=0.3, progress=False)
    head = out / ".auto" / "linear" / HEAD_JSON
    S.train_sentiment(tiny_checkpoint, tables / "train.csv", out, max_length=40, **kw)
    first = json.loads(head.read_text())
    stamp = head.stat().st_mtime_ns
    S.train_sentiment(tiny_checkpoint, tables / "train.csv", out, max_length=40, **kw)
    assert head.stat().st_mtime_ns == stamp  # same rows, same settings: reused
    monkeypatch.setattr(codehash, "package_hash", lambda: "an upgraded gptquant")
    S.train_sentiment(tiny_checkpoint, tables / "train.csv", out, max_length=40, **kw)
    assert head.stat().st_mtime_ns != stamp  # other code: trained again
    pd.read_csv(tables / "train.csv").iloc[:-10].to_csv(tmp_path / "fewer.csv", index=False)
    S.train_sentiment(tiny_checkpoint, tmp_path / "fewer.csv", out, max_length=40, **kw)
    second = json.loads(head.read_text())
    assert second["n_train"] + second["n_valid"] == first["n_train"] + first["n_valid"] - 10
    S.train_sentiment(tiny_checkpoint, tmp_path / "fewer.csv", out, max_length=32, **kw)
    assert json.loads(head.read_text())["max_length"] == 32
    assert json.loads((out / HEAD_JSON).read_text())["max_length"] == 32  # and OUT holds the new head
