"""A tiny synthetic bundle for runtime tests, built with onnx.helper (no torch).

The graph is a causal toy LM: h_t = mean of the embeddings of tokens 0..t (CumSum, so right padding
cannot reach a real position), next-token logits = h_t @ W. It emits every output of the bundle
contract, so the runtime's reductions run on real, deterministic numbers. Text is synthetic words.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from gptquant import bundle as B

WORDS = [f"w{i}" for i in range(40)]
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
LABELS3 = ["negative", "neutral", "positive"]


def make_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return len(vocab)


def make_graph(path, vocab: int, hidden: int = 8, n_labels: int = 3, seed: int = 0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.normal(size=(vocab, hidden)) * 1.5).astype(np.float32), "E"),
        numpy_helper.from_array((rng.normal(size=(hidden, vocab)) * 1.5).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(hidden, max(n_labels, 1))).astype(np.float32), "Ws"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
        numpy_helper.from_array(np.array([2**62], np.int64), "big"),
        numpy_helper.from_array(np.array([2], np.int64), "ax2"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array(1, np.int64), "ax1s"),
    ]
    N = helper.make_node
    nodes = [
        N("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        N("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        N("Gather", ["E", "input_ids"], ["emb"]),
        N("Mul", ["emb", "mask3"], ["emb_m"]),
        N("CumSum", ["emb_m", "ax1s"], ["csum"]),
        N("CumSum", ["maskf", "ax1s"], ["count"]),
        N("Max", ["count", "onef"], ["count1"]),
        N("Unsqueeze", ["count1", "ax2"], ["count3"]),
        N("Div", ["csum", "count3"], ["h"]),
        N("MatMul", ["h", "W"], ["logits"]),
        N("LogSoftmax", ["logits"], ["logp_all"], axis=-1),
        N("Slice", ["logp_all", "zero", "minus1", "ax1"], ["logp"]),
        N("Slice", ["input_ids", "one", "big", "ax1"], ["next_ids"]),
        N("Unsqueeze", ["next_ids", "ax2"], ["next3"]),
        N("GatherElements", ["logp", "next3"], ["lp3"], axis=2),
        N("Squeeze", ["lp3", "ax2"], ["token_logprob"]),
        N("Exp", ["logp"], ["p"]),
        N("Mul", ["p", "logp"], ["plogp"]),
        N("ReduceSum", ["plogp", "ax2"], ["e_logp"], keepdims=0),
        N("Neg", ["e_logp"], ["token_entropy"]),
        N("Mul", ["plogp", "logp"], ["plogp2"]),
        N("ReduceSum", ["plogp2", "ax2"], ["e_logp2"], keepdims=0),
        N("Mul", ["e_logp", "e_logp"], ["e_logp_sq"]),
        N("Sub", ["e_logp2", "e_logp_sq"], ["token_logprob_var"]),
        N("Greater", ["logp", "lp3"], ["gt"]),
        N("Cast", ["gt"], ["gti"], to=TensorProto.INT64),
        N("ReduceSum", ["gti", "ax2"], ["n_above"], keepdims=0),
        N("Add", ["n_above", "one"], ["token_rank"]),
        N("Mul", ["h", "mask3"], ["h_m"]),
        N("ReduceSum", ["h_m", "ax1"], ["h_sum"], keepdims=0),
        N("ReduceSum", ["maskf", "ax1"], ["len"], keepdims=1),
        N("Div", ["h_sum", "len"], ["pooled"]),
        N("Equal", ["count", "len"], ["at_last"]),
        N("Cast", ["at_last"], ["at_lastf"], to=TensorProto.FLOAT),
        N("Mul", ["at_lastf", "maskf"], ["onehot"]),
        N("Unsqueeze", ["onehot", "ax2"], ["onehot3"]),
        N("Mul", ["h", "onehot3"], ["h_last"]),
        N("ReduceSum", ["h_last", "ax1"], ["last_hidden"], keepdims=0),
    ]
    inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "onef"))
    outputs = [
        helper.make_tensor_value_info("token_logprob", TensorProto.FLOAT, ["batch", "seq_1"]),
        helper.make_tensor_value_info("token_entropy", TensorProto.FLOAT, ["batch", "seq_1"]),
        helper.make_tensor_value_info("token_logprob_var", TensorProto.FLOAT, ["batch", "seq_1"]),
        helper.make_tensor_value_info("token_rank", TensorProto.INT64, ["batch", "seq_1"]),
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden]),
        helper.make_tensor_value_info("last_hidden", TensorProto.FLOAT, ["batch", hidden]),
    ]
    if n_labels:
        nodes += [N("MatMul", ["pooled", "Ws"], ["sent_logits"]), N("LogSoftmax", ["sent_logits"], ["sent_logprob"], axis=-1)]
        outputs.append(helper.make_tensor_value_info("sent_logprob", TensorProto.FLOAT, ["batch", n_labels]))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in B.INPUTS]
    graph = helper.make_graph(nodes, "toy_lm", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return [o.name for o in outputs]


def make_bundle(path, *, max_length: int = 16, labels=LABELS3, add_bos: bool = True, add_eos: bool = True, seed: int = 0):
    """Write a complete, verifiable synthetic bundle into `path` and return its manifest."""
    pytest.importorskip("onnx")
    path.mkdir(parents=True, exist_ok=True)
    vocab = make_tokenizer(path / B.TOKENIZER_FILE)
    outputs = make_graph(path / B.MODEL_FILE, vocab, n_labels=len(labels) if labels else 0, seed=seed)
    manifest = {
        "name": "toy-lm", "precision": "fp32", "max_length": max_length, "opset": 17,
        "tokenizer": {"kind": "wordlevel", "bos_id": 2, "eos_id": 3, "pad_id": 0,
                      "add_bos": add_bos, "add_eos": add_eos, "vocab_size": vocab},
        "outputs": outputs,
        "parity": {"max_abs_logprob_diff": 0.0},
    }
    if labels:
        manifest["labels"] = list(labels)
    return B.write_manifest(path, manifest)


def words(rng, n: int) -> str:
    return " ".join(rng.choice(WORDS, size=n))


@pytest.fixture(scope="module")
def synth_bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "toy"
    make_bundle(path)
    return path


def test_synthetic_bundle_verifies_and_lists_contract_outputs(tmp_path):
    manifest = make_bundle(tmp_path / "b")
    assert B.verify_bundle(tmp_path / "b")["files"].keys() == {B.MODEL_FILE, B.TOKENIZER_FILE}
    assert set(B.TOKEN_OUTPUTS) <= set(manifest["outputs"])
    assert json.loads((tmp_path / "b" / B.MANIFEST).read_text())["labels"] == LABELS3
