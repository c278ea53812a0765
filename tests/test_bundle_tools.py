"""`gptquant model verify|info|pack|upload`: refusals are one line and never touch the installed model."""
from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from gptquant import bundle as B
from gptquant.cli import main
from conftest import make_bundle


@pytest.fixture
def bundle(tmp_path):
    make_bundle(tmp_path / "b")
    return tmp_path / "b"


@pytest.fixture
def project(tmp_path):
    """A project whose model/ already holds a different, valid bundle."""
    (tmp_path / "proj").mkdir()
    make_bundle(tmp_path / "proj" / "model", seed=7)
    return tmp_path / "proj"


def model_id(path):
    return B.bundle_hash(B.verify_bundle(path))


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_verify_ok_and_tampered(bundle, capsys):
    rc, out, _ = run(capsys, "model", "verify", str(bundle))
    assert rc == 0 and out.startswith("ok:") and out.count("\n") == 1
    tok = bundle / B.TOKENIZER_FILE
    tok.write_bytes(tok.read_bytes()[:-1] + b" ")
    rc, _, err = run(capsys, "model", "verify", str(bundle))
    assert rc != 0 and "sha256 mismatch" in err and err.count("\n") == 1


def test_info_summarises_the_manifest(bundle, capsys):
    rc, out, _ = run(capsys, "model", "info", str(bundle))
    assert rc == 0
    for needle in ("toy-lm", "fp32", "max length 16", "bos_id=2", "negative, neutral, positive", "token_rank", "max_abs_logprob_diff", "model.onnx"):
        assert needle in out


def test_pack_then_upload_replaces_the_model(bundle, project, tmp_path, capsys):
    before = model_id(project / "model")
    rc, _, _ = run(capsys, "model", "pack", str(bundle), "--out", str(tmp_path / "b.tar.gz"))
    assert rc == 0
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        assert sorted(tar.getnames()) == sorted([B.MANIFEST, B.MODEL_FILE, B.TOKENIZER_FILE])
    rc, out, _ = run(capsys, "model", "upload", str(tmp_path / "b.tar.gz"), "--project", str(project))
    assert rc == 0 and "installed toy-lm" in out
    assert model_id(project / "model") == model_id(bundle) != before
    assert sorted(p.name for p in project.iterdir()) == ["model"]  # no staging or old copies left
    # a bundle folder works too
    make_bundle(tmp_path / "c", seed=3)
    assert run(capsys, "model", "upload", str(tmp_path / "c"), "--project", str(project))[0] == 0
    assert model_id(project / "model") == model_id(tmp_path / "c")


def test_pack_refuses_a_tampered_bundle(bundle, tmp_path, capsys):
    (bundle / B.MODEL_FILE).write_bytes(b"not a model")
    rc, _, err = run(capsys, "model", "pack", str(bundle), "--out", str(tmp_path / "b.tar.gz"))
    assert rc != 0 and "sha256 mismatch" in err
    assert not (tmp_path / "b.tar.gz").exists()


def _tar(path, bundle, extra=(), replace=None):
    """A tar of `bundle` plus extra TarInfo members; replace={name: bytes} swaps a member's content."""
    replace = replace or {}
    with tarfile.open(path, "w:gz") as tar:
        for name in (B.MANIFEST, B.MODEL_FILE, B.TOKENIZER_FILE):
            data = replace.get(name, (bundle / name).read_bytes())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize("extra, message", [
    (_member("evil", tarfile.SYMTYPE, linkname="/etc/passwd"), "is a link"),
    (_member("hard", tarfile.LNKTYPE, linkname=B.MODEL_FILE), "is a link"),
    (_member("dev", tarfile.CHRTYPE), "not a regular file"),
    (_member("../escape.txt"), "leaves the archive"),
    (_member("/abs.txt"), "absolute path"),
    (_member("notes.txt"), "not listed in the manifest"),
])
def test_upload_refuses_unsafe_archives_and_keeps_the_model(bundle, project, tmp_path, capsys, extra, message):
    before = model_id(project / "model")
    archive = _tar(tmp_path / "bad.tar.gz", bundle, extra=[extra])
    rc, _, err = run(capsys, "model", "upload", str(archive), "--project", str(project))
    assert rc != 0 and message in err and err.count("\n") == 1
    assert model_id(project / "model") == before
    assert sorted(p.name for p in project.iterdir()) == ["model"]
    assert not (tmp_path / "escape.txt").exists()


def test_upload_refuses_hash_mismatch_and_keeps_the_model(bundle, project, tmp_path, capsys):
    before = model_id(project / "model")
    tok = (bundle / B.TOKENIZER_FILE).read_bytes()
    archive = _tar(tmp_path / "bad.tar.gz", bundle, replace={B.TOKENIZER_FILE: tok[:-1] + b" "})
    rc, _, err = run(capsys, "model", "upload", str(archive), "--project", str(project))
    assert rc != 0 and "sha256 mismatch" in err
    assert model_id(project / "model") == before
    assert sorted(p.name for p in project.iterdir()) == ["model"]


def test_upload_refuses_symlinked_folder_files(bundle, project, tmp_path, capsys):
    before = model_id(project / "model")
    real = tmp_path / "real_tokenizer.json"
    os.replace(bundle / B.TOKENIZER_FILE, real)
    os.symlink(real, bundle / B.TOKENIZER_FILE)
    rc, _, err = run(capsys, "model", "upload", str(bundle), "--project", str(project))
    assert rc != 0 and "symlink" in err
    assert model_id(project / "model") == before
    link = tmp_path / "link"
    os.symlink(tmp_path / "proj" / "model", link)
    rc, _, err = run(capsys, "model", "upload", str(link), "--project", str(project))
    assert rc != 0 and "symlink" in err


def test_upload_keeps_a_replaced_checkpoint(bundle, tmp_path, capsys):
    proj = tmp_path / "p"
    (proj / "model").mkdir(parents=True)
    (proj / "model" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    rc, out, _ = run(capsys, "model", "upload", str(bundle), "--project", str(proj))
    assert rc == 0 and "kept at" in out
    kept = [p for p in proj.iterdir() if p.name.startswith("model.previous-")]
    assert len(kept) == 1 and (kept[0] / "config.json").is_file()
    assert model_id(proj / "model") == model_id(bundle)
