"""Issue 15, bundle identity and the score cache: the id covers the whole manifest and every file,
an edited manifest fails verification, and a damaged cache row is rescored, never served."""
from __future__ import annotations

import json
import logging
import sqlite3

import pandas as pd
import pytest
from conftest import make_bundle

from gptquant import bundle as B
from gptquant.cli import main
from gptquant.features.cache import ScoreCache, text_key
from gptquant.features.pipeline import score_with_cache


def _edit_manifest(bundle, **changes):
    path = bundle / B.MANIFEST
    m = json.loads(path.read_text(encoding="utf-8"))
    m.update(changes)
    path.write_text(json.dumps(m, ensure_ascii=False, indent=2), encoding="utf-8")


def test_model_verify_fails_on_an_edited_manifest(tmp_path, capsys):
    make_bundle(tmp_path / "b", max_length=16)
    assert main(["model", "verify", str(tmp_path / "b")]) == 0
    _edit_manifest(tmp_path / "b", max_length=4096)  # before: verify said ok, the scorer used 4096
    assert main(["model", "verify", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err
    assert "manifest.json: edited after export" in err and "Traceback" not in err


def test_hidden_files_are_hashed_and_unlisted_ones_refused(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / ".vocab_extra").write_text("w41 w42")
    m = make_bundle(bundle)
    assert ".vocab_extra" in m["files"]  # before: dotfiles were skipped by the manifest and by verify
    (bundle / ".vocab_extra").write_text("w43")
    with pytest.raises(B.BundleError, match="sha256 mismatch"):
        B.verify_bundle(bundle)
    make_bundle(bundle)
    (bundle / ".sneaked").write_text("x")
    with pytest.raises(B.BundleError, match=r"\.sneaked: file not listed"):
        B.verify_bundle(bundle)


def test_leftover_temp_files_of_an_interrupted_write_are_cleaned_not_bundled(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / ".model.onnx.k3j2.tmp").write_bytes(b"half a model")
    m = make_bundle(bundle)
    assert not (bundle / ".model.onnx.k3j2.tmp").exists() and ".model.onnx.k3j2.tmp" not in m["files"]
    B.verify_bundle(bundle)


def test_the_id_changes_with_any_manifest_field(tmp_path):
    a, b = make_bundle(tmp_path / "a", max_length=64), make_bundle(tmp_path / "b", max_length=128)
    assert a["files"] == b["files"]  # same bytes on disk
    assert B.bundle_hash(a) != B.bundle_hash(b)  # before: the id hashed the files only, so they were one bundle
    assert B.bundle_hash(a) == B.bundle_hash(B.verify_bundle(tmp_path / "a"))  # stable across reads


def test_unsealed_manifest_from_an_older_gptquant_is_refused_with_the_fix(tmp_path):
    make_bundle(tmp_path / "b")
    path = tmp_path / "b" / B.MANIFEST
    m = json.loads(path.read_text())
    del m[B.SEAL]
    m["format_version"] = 1
    path.write_text(json.dumps(m))
    with pytest.raises(B.BundleError, match="not sealed.*re-export"):
        B.verify_bundle(tmp_path / "b")


def test_max_length_64_and_128_exports_are_different_bundles_in_the_score_cache(tiny_checkpoint, tmp_path):
    from gptquant.lm.export import export_bundle
    from gptquant.runtime.scorer import load_model

    ids = {}
    for n in (64, 128):
        export_bundle(tiny_checkpoint, tmp_path / f"m{n}", int8=False, max_length=n, exporter="torchscript")
        ids[n] = load_model(tmp_path / f"m{n}").bundle_hash
    assert ids[64] != ids[128]
    long_text = "公司公告" * 40  # longer than 64 tokens: the two bundles truncate it differently
    with ScoreCache(tmp_path / "c.sqlite") as cache:
        short = score_with_cache(load_model(tmp_path / "m64"), [long_text], cache, ids[64], progress=False)
        full = score_with_cache(load_model(tmp_path / "m128"), [long_text], cache, ids[128], progress=False)
        assert len(cache) == 2
    assert short["n_tokens"].iloc[0] < full["n_tokens"].iloc[0]


class Counting:
    def __init__(self):
        self.seen = []

    def score(self, texts):
        self.seen += list(texts)
        return pd.DataFrame({"sentiment": [float(len(t)) for t in texts]})


def test_a_corrupted_cache_row_is_rescored_and_counted_never_served(tmp_path, caplog):
    db = tmp_path / "c.sqlite"
    texts = ["一", "二二", "三三三"]
    with ScoreCache(db) as cache:
        score_with_cache(Counting(), texts, cache, "bundle", progress=False)
    con = sqlite3.connect(db)
    con.execute("UPDATE scores SET features = ? WHERE text_hash = ?", ('{"sentiment": 99.0}', text_key("二二")))
    con.execute("UPDATE scores SET features = ? WHERE text_hash = ?", ('{"sentim', text_key("三三三")))
    con.commit()
    con.close()
    scorer = Counting()
    with caplog.at_level(logging.WARNING), ScoreCache(db) as cache:
        out = score_with_cache(scorer, texts, cache, "bundle", progress=False)
        assert cache.corrupt_rows == 2
    assert out["sentiment"].tolist() == [1.0, 2.0, 3.0]  # before: 99.0 served, then a JSON traceback
    assert scorer.seen == ["二二", "三三三"]
    assert any("2 cached row(s) failed their checksum" in r.getMessage() for r in caplog.records)
    with ScoreCache(db) as cache:  # the rescored rows were written back whole
        assert cache.get_many("bundle", [text_key(t) for t in texts]).keys() == {text_key(t) for t in texts}
        assert cache.corrupt_rows == 0


def test_a_cache_from_before_checksums_is_upgraded_and_its_rows_rescored(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE scores (bundle_hash TEXT NOT NULL, text_hash TEXT NOT NULL, features TEXT NOT NULL, "
                "PRIMARY KEY (bundle_hash, text_hash)) WITHOUT ROWID")
    con.execute("INSERT INTO scores VALUES ('bundle', ?, '{\"sentiment\": 5.0}')", (text_key("一"),))
    con.commit()
    con.close()
    scorer = Counting()
    with ScoreCache(db) as cache:
        out = score_with_cache(scorer, ["一"], cache, "bundle", progress=False)
    assert scorer.seen == ["一"] and out["sentiment"].tolist() == [1.0]
