"""The paths compare_peers.py times, each built once in its own process and then asked for passes.

A pass returns (wall seconds, CPU seconds of this process, all its threads); CPU time is what stays comparable
when other work shares the cores (it is None where the work runs in other processes).
"""
from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path

GEMM_SHAPES = ((128, 768, 2304), (128, 768, 3072), (128, 3072, 768), (512, 768, 3072))  # (M, K, N) of the model


def timed(fn, *args) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w, time.process_time() - c


def gptquant_path(kind: str, spec: dict):
    """The Scorer as users run it; 'gptquant-batch' lifts the one-text-per-run rule of int8 bundles,
    'gptquant-spin' lets onnxruntime's idle threads busy-wait (its default, off in the Scorer)."""
    import numpy as np

    from gptquant.runtime import Scorer

    s = Scorer(spec["bundle"], threads=spec["threads"], batch_size=32, spin=kind == "gptquant-spin")
    s.alone = s.alone and kind != "gptquant-batch"
    s.score(spec["texts"][:4])

    def logp():
        if not s.has_token_outputs:
            return None
        return [s.session.run(["token_logprob"], {"input_ids": np.array([x]), "attention_mask": np.ones((1, len(x)), np.int64)})[0][0]
                for x in spec["ids"][:spec["agree"]]]
    return lambda: timed(s.score, spec["texts"]), logp


def gptquant_procs_path(spec: dict, stack: contextlib.ExitStack):
    """`gptquant score --workers N --threads 1`: N single-threaded processes on parts of 8 texts."""
    import pandas as pd

    from gptquant.runtime import Scorer
    from gptquant.runtime.engines import open_engine

    h = Scorer(spec["bundle"], threads=1).bundle_hash
    engine = stack.enter_context(open_engine("local", bundle_dir=spec["bundle"], bundle_hash=h,
                                             workers=spec["threads"], threads=1))
    texts = spec["texts"]
    parts = [(j, pd.DataFrame({"article_id": range(j, min(j + 8, len(texts))), "text": texts[j:j + 8]}))
             for j in range(0, len(texts), 8)]

    def run():
        return list(engine(iter(parts)))
    run()  # starts the workers and opens their sessions
    return lambda: (timed(run)[0], None), lambda: None


def ct2_path(kind: str, spec: dict):
    """Generator.score_batch on gptquant's ids (same text, same truncation) given as the token strings it takes;
    'ct2-inter' runs N replicas of 1 thread (inter_threads) instead of one of N threads."""
    import ctranslate2
    import numpy as np
    from tokenizers import Tokenizer

    from gptquant.tokenize import SpecialTokens, token_ids

    n = spec["threads"]
    inter, intra = (n, 1) if kind == "ct2-inter" else (1, n)
    g = ctranslate2.Generator(spec["ct2"], device="cpu", compute_type="int8", inter_threads=inter, intra_threads=intra)
    tok = Tokenizer.from_file(str(Path(spec["bundle"]) / "tokenizer.json"))
    policy = SpecialTokens.from_dict(spec["policy"])

    def score():  # tokenising is part of the pass, as it is in Scorer.score
        seqs = token_ids(tok, spec["texts"], policy)
        toks = [[tok.id_to_token(i) for i in s[:spec["max_length"]]] for s in seqs]
        return g.score_batch(toks, max_batch_size=spec["ct2_batch"], batch_type="tokens")
    score()
    agree = [[tok.id_to_token(i) for i in x] for x in spec["ids"][:spec["agree"]]]
    return lambda: timed(score), lambda: [np.array(r.log_probs) for r in g.score_batch(agree)]


def torch_path(spec: dict):
    """The export's feature graph (all LM statistics) in eager torch fp32, length-sorted batches of 32."""
    import torch

    from gptquant.lm.checkpoint import load_checkpoint
    from gptquant.lm.export import feature_graph
    from gptquant.tokenize import encode

    torch.set_num_threads(spec["threads"])
    ckpt = load_checkpoint(spec["ckpt"])
    graph = feature_graph(ckpt.model)
    texts = spec["texts"]
    order = sorted(range(len(texts)), key=lambda i: len(spec["ids"][i]))

    def run():
        with torch.no_grad():
            for b in range(0, len(order), 32):
                ids, mask, _ = encode(ckpt.tokenizer, [texts[i] for i in order[b:b + 32]], ckpt.policy, spec["max_length"])
                graph(torch.from_numpy(ids), torch.from_numpy(mask))

    def logp():
        with torch.no_grad():
            return [graph(torch.tensor([x]), torch.ones((1, len(x)), dtype=torch.long))[0][0].numpy()
                    for x in spec["ids"][:spec["agree"]]]
    run()
    return lambda: timed(run), logp


def gemm_path(spec: dict):
    """onnxruntime's u8 x s8 MatMulInteger on the model's GEMM shapes: the best (wall, CPU) ops/s of 5 runs each."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    sessions = []
    for m, k, n in GEMM_SHAPES:
        w = numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "w")
        g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])], [w])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = spec["threads"]
        sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString(),
                                    opts, providers=["CPUExecutionProvider"])
        sessions.append((2.0 * m * k * n, sess, {"a": rng.integers(0, 256, (m, k), dtype=np.uint8)}))

    def rates():
        wall = cpu = 0.0
        for ops, sess, feed in sessions:
            sess.run(None, feed)
            runs = [timed(sess.run, None, feed) for _ in range(5)]
            wall = max(wall, ops / min(r[0] for r in runs))
            cpu = max(cpu, ops / max(min(r[1] for r in runs), 1e-9))
        return wall, cpu
    return rates, lambda: None


def serve(kind: str, spec: dict, conn) -> None:
    """A path's process: build it once, then answer 'time' / 'logp' until 'stop'."""
    with contextlib.ExitStack() as stack:
        try:
            if kind in ("gptquant", "gptquant-spin", "gptquant-batch", "sentiment"):
                timer, logp = gptquant_path(kind, spec)
            elif kind == "gptquant-procs":
                timer, logp = gptquant_procs_path(spec, stack)
            elif kind in ("ct2", "ct2-inter"):
                timer, logp = ct2_path(kind, spec)
            elif kind == "torch":
                timer, logp = torch_path(spec)
            else:
                timer, logp = gemm_path(spec)
            conn.send(("ready", None))
            while (msg := conn.recv()) != "stop":
                conn.send(("ok", timer() if msg == "time" else logp()))
        except Exception:
            conn.send(("error", traceback.format_exc()))
