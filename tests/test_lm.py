"""gptquant.lm: checkpoint loading, tokenizer detection, special tokens, generation, pretraining."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gptquant.errors import GptquantError  # noqa: E402
from gptquant.lm.checkpoint import load_checkpoint  # noqa: E402
from gptquant.lm.generate import next_token, prompt_ids, sample  # noqa: E402
from gptquant.lm.pretrain import pretrain  # noqa: E402
from gptquant.tokenize import encode, token_ids  # noqa: E402


def test_uer_checkpoint_tokenizer_matches_reference(fixture_model, shared_data):
    from tokenizers import Tokenizer

    ckpt = load_checkpoint(fixture_model, with_model=False)
    assert ckpt.tokenizer_kind == "wordpiece"
    assert ckpt.tokenizer.get_vocab_size() == 21128 == ckpt.vocab_size
    assert (ckpt.policy.bos_id, ckpt.policy.eos_id, ckpt.policy.add_bos, ckpt.policy.add_eos) == (101, 102, True, False)
    ref = Tokenizer.from_file(str(shared_data / "chinese_bert_vocab" / "tokenizer.json"))
    text = "贵州茅台发布2020年年报，净利润同比增长10.3%"
    ours = token_ids(ckpt.tokenizer, [text], ckpt.policy)[0]
    theirs = ref.encode(text).ids  # [CLS] ... [SEP]
    assert ours == theirs[:-1], "same WordPiece ids, [CLS] first, and no [SEP] before a prediction"


def test_next_token_is_predicted_after_the_last_text_token_not_after_sep(fixture_model):
    ckpt = load_checkpoint(fixture_model)
    text = "贵州茅台发布公告，"
    ids = prompt_ids(ckpt, text)
    assert ids[0] == 101 and 102 not in ids
    with torch.no_grad():
        right = ckpt.model(input_ids=torch.tensor([ids])).logits[0, -1]
        after_sep = ckpt.model(input_ids=torch.tensor([ids + [102]])).logits[0, -1]
    top = next_token(ckpt, text, k=3)
    assert top[0][0] == ckpt.tokenizer.id_to_token(int(right.argmax()))
    assert int(right.argmax()) != int(after_sep.argmax()), "the seed's bug would give a different token"
    assert abs(sum(p for _, p in next_token(ckpt, text, k=21128)) - 1) < 1e-3


def test_sampled_continuation_is_seeded(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    a = sample(ckpt, "公司公告", max_new_tokens=12, seed=1)
    b = sample(ckpt, "公司公告", max_new_tokens=12, seed=1)
    assert a == b and isinstance(a, str)
    assert " " not in a.strip() or any(c.isascii() and c.isalpha() for c in a), "no spaces between Chinese characters"


def test_bin_weights_load_with_weights_only_and_pickles_are_refused(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    d = tmp_path / "bin"
    shutil.copytree(tiny_checkpoint, d)
    (d / "model.safetensors").unlink()
    torch.save(ckpt.model.state_dict(), d / "pytorch_model.bin")
    again = load_checkpoint(d)
    for k, v in ckpt.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, d / "pytorch_model.bin")
    with pytest.raises(GptquantError, match="weights_only"):
        load_checkpoint(d)


def test_vocab_larger_than_embedding_is_refused(tiny_checkpoint, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_checkpoint, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["vocab_size"] = 120
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GptquantError, match="embedding rows"):
        load_checkpoint(d, with_model=False)


def test_missing_tokenizer_and_config_errors_name_the_directory(tmp_path):
    with pytest.raises(GptquantError, match="config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10, "n_embd": 8, "n_layer": 1, "n_head": 1}))
    with pytest.raises(GptquantError, match="no tokenizer"):
        load_checkpoint(tmp_path)


def test_byte_level_bpe_checkpoint_is_detected(tmp_path):
    from tokenizers.implementations import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from conftest import demo_texts

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(demo_texts(100), vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False)
    tok.save_model(str(tmp_path))
    n = tok.get_vocab_size()
    GPT2Config(vocab_size=n, n_layer=1, n_embd=16, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0).save_pretrained(tmp_path)
    GPT2LMHeadModel(GPT2Config.from_pretrained(tmp_path)).save_pretrained(tmp_path)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.tokenizer_kind == "bpe"
    assert ckpt.policy.bos_id == ckpt.tokenizer.token_to_id("<|endoftext|>") and not ckpt.policy.add_eos
    ids = token_ids(ckpt.tokenizer, ["汽"], ckpt.policy)[0]
    assert len(ids) >= 3, "byte-level BPE spends several tokens on an unseen Chinese character"


def test_padding_and_truncation_in_encode(fixture_model):
    ckpt = load_checkpoint(fixture_model, with_model=False)
    ids, mask, trunc = encode(ckpt.tokenizer, ["短", "很长的文本" * 20], ckpt.policy, max_length=16)
    assert ids.shape == (2, 16) and mask[0].sum() == 2 and mask[1].sum() == 16
    assert list(trunc) == [False, True] and ids[0, 2] == ckpt.policy.pad_id


def test_pretrain_is_seeded_and_resumes_to_the_same_weights(tmp_path):
    from conftest import demo_texts

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(demo_texts(200, seed=3)), encoding="utf-8")
    kw = dict(config="tiny", block=32, batch=4, vocab_size=600, progress=False, save_every=3)
    straight = pretrain(tmp_path / "a", corpus, steps=6, **kw)
    first = pretrain(tmp_path / "b", corpus, steps=6, minutes=0, **kw)  # stopped after its first step
    assert first["steps"] == 1
    resumed = pretrain(tmp_path / "b", corpus, steps=6, **kw)
    assert straight["steps"] == resumed["steps"] == 6
    a = load_checkpoint(tmp_path / "a").model.state_dict()
    b = load_checkpoint(tmp_path / "b").model.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert (tmp_path / "a" / "TRAINING.json").is_file() and (tmp_path / "a" / "vocab.txt").is_file()
    assert load_checkpoint(tmp_path / "a", with_model=False).policy.bos_id is not None


def test_continued_pretraining_lowers_loss_on_the_corpus(fixture_model, tmp_path):
    from conftest import demo_texts

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(demo_texts(120, seed=5)), encoding="utf-8")
    out = pretrain(tmp_path / "cont", corpus, model=fixture_model, steps=12, block=64, batch=4, lr=5e-4, warmup=2,
                   progress=False, val_fraction=0.2)
    assert (tmp_path / "cont" / "vocab.txt").read_bytes() == (fixture_model / "vocab.txt").read_bytes()
    before = pretrain.__globals__["_lm_loss"]
    ck0 = load_checkpoint(fixture_model)
    ck1 = load_checkpoint(tmp_path / "cont")
    from gptquant.lm.pretrain import blocks

    x = torch.from_numpy(blocks(demo_texts(40, seed=99), ck0.tokenizer, ck0.policy, 64)[:8])
    with torch.no_grad():
        assert float(before(ck1.model, x)) < float(before(ck0.model, x)), out
