"""Issue 15, checkpoints at export: a vocabulary that does not fit the embedding and absurd config sizes are
refused with the sizes named, before anything is allocated."""
from __future__ import annotations

import json
import re
import resource
import time

import pytest

from gptquant.cli import main

pytest.importorskip("torch")


def _copy(src, dst, config=None, vocab_delta: int = 0):
    """A checkpoint folder linking the fixture's weights, with its config or vocab.txt edited."""
    dst.mkdir()
    for p in src.iterdir():
        if p.name not in ("config.json", "vocab.txt"):
            (dst / p.name).symlink_to(p)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(config or {})
    (dst / "config.json").write_text(json.dumps(cfg))
    vocab = (src / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocab = vocab[:vocab_delta] if vocab_delta < 0 else vocab + [f"[unused_extra{i}]" for i in range(vocab_delta)]
    (dst / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return dst


@pytest.mark.parametrize("delta, tokens", [(-128, 21000), (64, 21192)])
def test_export_refuses_a_vocabulary_that_does_not_fit_the_embedding(fixture_model, tmp_path, capsys, delta, tokens):
    model = _copy(fixture_model, tmp_path / "m", vocab_delta=delta)
    assert main(["export", str(model), "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err  # before (smaller): exported; the LM head still spread mass on 128 phantom rows
    assert f"tokenizer has {tokens} tokens but the model has 21128 embedding rows" in err
    assert not (tmp_path / "b").exists()


def test_an_absurd_config_is_refused_before_allocating_naming_the_size(fixture_model, tmp_path, capsys):
    model = _copy(fixture_model, tmp_path / "m", config={"n_layer": 10000})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    assert main(["export", str(model), "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err
    assert time.perf_counter() - t0 < 5 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB
    assert re.search(r"n_layer=10000, n_embd=256, vocab_size=21128 describe a model of [\d,.]+ [GM]iB in fp32", err)
    assert "refusing before allocating" in err or "do not match" in err


def test_a_config_that_does_not_describe_the_weights_file_is_refused(fixture_model, tmp_path, capsys):
    model = _copy(fixture_model, tmp_path / "m", config={"n_layer": 64})
    assert main(["export", str(model), "--out", str(tmp_path / "b")]) != 0
    assert "but model.safetensors holds 33.2 MiB: config and weights do not match" in capsys.readouterr().err


@pytest.mark.parametrize("key, value", [("n_layer", 0), ("n_embd", -256), ("n_head", "4"), ("n_head", 3)])
def test_nonsense_sizes_are_named(fixture_model, tmp_path, capsys, key, value):
    model = _copy(fixture_model, tmp_path / "m", config={key: value})
    assert main(["export", str(model), "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
