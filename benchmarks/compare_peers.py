"""gptquant int8 against a peer a user would pick instead, in one interleaved run on the same machine:

  python benchmarks/compare_peers.py [--threads 2] [--texts 64] [--rounds 3] [--work DIR] [--no-sentiment]

Same HF checkpoint (a seeded random GPT-2 12 x 768, vocab 21128, the BERT vocabulary: the
uer/gpt2-chinese-cluecorpussmall shape), same real Chinese news (../shared/data/astock_news), same token ids
(gptquant's tokenizer and [CLS] policy, cut to --max-length), same threads. Paths, each in its own process
and timed in turn, round after round (best pass reported):

  gptquant int8        Scorer.score on the full int8 bundle: every LM statistic, pooled states (all features)
  gptquant int8 batch  the same with length-sorted batches instead of one text per run (NOT batch-independent:
                       int8 activation scales span the batch) - what the batch-independence guarantee costs
  sentiment-only       the int8 sentiment-only bundle of a P-tuned head on the same checkpoint (--no-sentiment: skipped)
  CTranslate2 int8     Generator.score_batch on ct2-transformers-converter's int8 model (pip install 'gptquant[bench]')
  torch fp32           the export's feature graph in eager torch, batches of 32
  int8 GEMM            onnxruntime MatMulInteger (u8 x s8), the model's own shapes: the machine's int8 ceiling

Each path's share of the ceiling counts the FLOPs its forward pass needs from the shape (forward_flops). The
per-token log-probs of gptquant, CTranslate2 and torch fp32 are compared (mean / max |delta|) to show the peer
computes the same model.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

GEMM_SHAPES = ((128, 768, 2304), (128, 768, 3072), (128, 3072, 768), (512, 768, 3072))  # (M, K, N)


# ---- arithmetic (tested in tests/test_compare_peers.py) ------------------------------------------------

def forward_flops(cfg: dict, n: int, lm_head: bool = True) -> float:
    """FLOPs of one causal forward pass over a text of n tokens: the linear layers (2 per weight per token),
    causal attention (QK^T and AV over each token's prefix) and, when scored, the LM head on n - 1 positions."""
    d, layers, vocab = int(cfg["n_embd"]), int(cfg["n_layer"]), int(cfg["vocab_size"])
    ff = int(cfg.get("n_inner") or 4 * d)
    linear = 2 * n * layers * (3 * d * d + d * d + 2 * d * ff)
    attention = layers * 2 * 2 * d * n * (n + 1) // 2
    head = 2 * (n - 1) * d * vocab if lm_head else 0
    return float(linear + attention + head)


def gemm_rate(m: int, k: int, n: int, seconds: float) -> float:
    """Operations per second of an (m x k) @ (k x n) product (one multiply and one add per MAC)."""
    return 2.0 * m * k * n / seconds


def share_of_ceiling(tokens_per_s: float, flops_per_token: float, ceiling_ops: float) -> float:
    return tokens_per_s * flops_per_token / ceiling_ops


def logprob_agreement(a: list, b: list) -> dict:
    """Mean and max |a - b| over all tokens of paired per-text log-prob arrays."""
    import numpy as np

    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        raise ValueError("log-prob lists differ in texts or tokens")
    d = np.abs(np.concatenate([np.asarray(x, float) for x in a]) - np.concatenate([np.asarray(y, float) for y in b]))
    return {"mean_abs": float(d.mean()), "max_abs": float(d.max()), "tokens": int(d.size)}


# ---- inputs ------------------------------------------------------------------------------------------

def news_texts(n: int) -> list[str]:
    """The first n distinct non-empty article texts of the Astock news (real Chinese financial news)."""
    import pandas as pd

    from score_throughput import SHARED

    path = SHARED / "data" / "astock_news" / "astock_news.csv"
    if not path.is_file():
        raise SystemExit(f"needs {path} (the shared data folder)")
    col = pd.read_csv(path, usecols=["text"])["text"].dropna().astype(str).str.strip()
    texts = col[col.str.len() >= 8].drop_duplicates().head(n).tolist()
    if len(texts) < n:
        raise SystemExit(f"{path}: only {len(texts)} usable texts, asked for {n}")
    return texts


def prepare(work: Path, sentiment: bool, max_length: int) -> dict:
    """Checkpoint, bundles and CTranslate2 model in `work` (reused when already there)."""
    from gptquant.lm.export import export_bundle
    from score_throughput import make_uer_checkpoint

    ckpt = work / "uer-random"
    if not (ckpt / "config.json").is_file():
        make_uer_checkpoint(work)
    out = {"ckpt": ckpt, "full": work / "int8-full", "ct2": work / "ct2-int8"}
    if not (out["full"] / "manifest.json").is_file():
        export_bundle(ckpt, out["full"], int8=True, max_length=max_length)
    if sentiment:
        out["sentiment"] = work / "int8-sentiment-only"
        if not (out["sentiment"] / "manifest.json").is_file():
            export_bundle(ptuned_head(ckpt, work, max_length), out["sentiment"], int8=True, max_length=max_length,
                          sentiment_only=True)
    out["ct2_config"] = convert_ct2(ckpt, out["ct2"])
    return out


def ptuned_head(ckpt: Path, work: Path, max_length: int) -> Path:
    """A P-tuned sentiment head after 2 steps on demo-world news (weights do not change the cost)."""
    import numpy as np
    import pandas as pd

    from gptquant.demo_world import LABELS, write_article
    from gptquant.lm.sentiment import train_sentiment

    head = work / "ptuned"
    if not (head / "config.json").is_file():
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, 48)
        data = work / "labelled.csv"
        pd.DataFrame({"text": [write_article("样本公司", int(k), rng) for k in y], "label": [LABELS[k] for k in y]}
                     ).to_csv(data, index=False)
        train_sentiment(ckpt, data, head, "ptuning", steps=2, eval_every=2, batch=8, max_length=max_length,
                        progress=False, baseline=False)
    return head


def convert_ct2(ckpt: Path, out: Path) -> dict | None:
    """ct2-transformers-converter's int8 model, with the special tokens gptquant frames texts with: the BERT
    tokenizer has no bos/eos, which CTranslate2 4.x writes as null and then refuses to load."""
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        return None
    from gptquant.lm.checkpoint import load_checkpoint

    if not (out / "config.json").is_file():
        TransformersConverter(str(ckpt)).convert(str(out), quantization="int8", force=True)
    policy = load_checkpoint(ckpt, with_model=False)
    tok = policy.tokenizer
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(bos_token=tok.id_to_token(policy.policy.bos_id), eos_token=tok.id_to_token(policy.policy.eos_id))
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return cfg


# ---- the paths, each in its own process -------------------------------------------------------------

def runner(kind: str, spec: dict):
    """(time one pass over the texts -> seconds, per-token log-probs of the first texts or None)."""
    import numpy as np

    threads, texts, ids = spec["threads"], spec["texts"], spec["ids"]
    if kind in ("gptquant", "gptquant-batch", "sentiment"):
        from gptquant.runtime import Scorer

        s = Scorer(spec["bundle"], threads=threads, batch_size=32)
        s.alone = s.alone and kind != "gptquant-batch"
        s.score(texts[:4])

        def logp():
            if not s.has_token_outputs:
                return None
            return [s.session.run(["token_logprob"], {"input_ids": np.array([x]), "attention_mask": np.ones((1, len(x)), np.int64)})[0][0]
                    for x in ids[:spec["agree"]]]
        return lambda: _timed(s.score, texts), logp
    if kind == "ct2":
        import ctranslate2
        from tokenizers import Tokenizer

        from gptquant.tokenize import SpecialTokens, token_ids

        g = ctranslate2.Generator(str(spec["ct2"]), device="cpu", compute_type="int8", intra_threads=threads)
        tok = Tokenizer.from_file(str(Path(spec["bundle"]) / "tokenizer.json"))

        def score():  # gptquant's ids (same text, same truncation) as the token strings CTranslate2 takes
            seqs = token_ids(tok, texts, SpecialTokens.from_dict(spec["policy"]))
            toks = [[tok.id_to_token(i) for i in s[:spec["max_length"]]] for s in seqs]
            return g.score_batch(toks, max_batch_size=spec["ct2_batch"], batch_type="tokens")
        score()
        toks = [[tok.id_to_token(i) for i in x] for x in ids[:spec["agree"]]]
        return lambda: _timed(score), lambda: [np.array(r.log_probs) for r in g.score_batch(toks)]
    if kind == "torch":
        return torch_runner(spec)
    if kind == "gemm":
        return gemm_runner(threads), lambda: None
    raise ValueError(kind)


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def torch_runner(spec):
    import numpy as np
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
    return lambda: _timed(run), logp


def gemm_runner(threads: int):
    """Best rate of onnxruntime's u8 x s8 MatMulInteger over the model's GEMM shapes (ops/s)."""
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
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        sessions.append(((m, k, n), sess, {"a": rng.integers(0, 256, (m, k), dtype=np.uint8)}))

    def rate():
        best = 0.0
        for (m, k, n), sess, feed in sessions:
            sess.run(None, feed)
            t = min(_timed(sess.run, None, feed) for _ in range(5))
            best = max(best, gemm_rate(m, k, n, t))
        return best
    return rate


def serve(kind: str, spec: dict, conn) -> None:
    """A path's process: build it once, then answer 'time' / 'logp' until 'stop'."""
    try:
        timer, logp = runner(kind, spec)
        conn.send(("ready", None))
        while (msg := conn.recv()) != "stop":
            conn.send(("ok", timer() if msg == "time" else logp()))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# ---- the driver ----------------------------------------------------------------------------------------

class Worker:
    """One path's process and its pass times."""

    def __init__(self, ctx, name: str, kind: str, spec: dict):
        self.name, self.kind, self.times = name, kind, []
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(kind, spec, child), daemon=True)
        self.proc.start()

    def ask(self, msg: str):
        self.conn.send(msg)
        return self.reply()

    def reply(self):
        status, value = self.conn.recv()
        if status == "error":
            raise SystemExit(f"{self.name} failed:\n{value}")
        return value

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads of every path (ORT intra-op, CT2 intra, torch)")
    ap.add_argument("--texts", type=int, default=64, help="news articles per pass")
    ap.add_argument("--rounds", type=int, default=3, help="passes per path, interleaved; the best is reported")
    ap.add_argument("--max-length", type=int, default=128, help="tokens per text incl. [CLS] (same cut for all)")
    ap.add_argument("--agree", type=int, default=16, help="texts whose per-token log-probs are compared")
    ap.add_argument("--ct2-batch", type=int, default=1024, help="CTranslate2 max_batch_size in tokens")
    ap.add_argument("--no-sentiment", action="store_true", help="skip the P-tuned head and its sentiment-only bundle")
    ap.add_argument("--no-torch", action="store_true", help="skip torch fp32 (the slowest path)")
    ap.add_argument("--work", help="keep checkpoint, bundles and CT2 model here and reuse them (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gptquant-peers-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t = time.time()
        made = prepare(work, not args.no_sentiment, args.max_length)
        print(f"checkpoint, bundles, CT2 model ready in {time.time() - t:.0f} s ({work})")
        run(args, made)


def run(args, made: dict) -> None:
    from gptquant.lm.checkpoint import load_checkpoint
    from gptquant.runtime import Scorer

    cfg = load_checkpoint(made["ckpt"], with_model=False).config
    scorer = Scorer(made["full"], threads=1)
    texts = news_texts(args.texts)
    ids = scorer.encode(texts)[0]
    spec = {"threads": args.threads, "texts": texts, "ids": ids, "bundle": str(made["full"]), "ckpt": str(made["ckpt"]),
            "ct2": str(made["ct2"]), "policy": scorer.policy.to_dict(), "max_length": scorer.max_length,
            "agree": args.agree, "ct2_batch": args.ct2_batch}
    paths = [("gptquant int8, all features", "gptquant", {}), ("gptquant int8, batched (not batch-independent)", "gptquant-batch", {})]
    if "sentiment" in made:
        paths.append(("gptquant int8, sentiment-only", "sentiment", {"bundle": str(made["sentiment"])}))
    else:
        print("sentiment-only: skipped (--no-sentiment): no sentiment graph in this export")
    if made["ct2_config"] is None:
        print("CTranslate2: not installed (pip install 'gptquant[bench]'): its row and the log-prob agreement are skipped")
    else:
        paths.append(("CTranslate2 int8 score_batch", "ct2", {}))
        print("CTranslate2 config:", json.dumps(made["ct2_config"]))
    if not args.no_torch:
        paths.append(("torch fp32 eager", "torch", {}))
    ctx = mp.get_context("spawn")
    procs = [Worker(ctx, name, kind, {**spec, **extra}) for name, kind, extra in paths]
    gemm = Worker(ctx, "int8 GEMM", "gemm", spec)
    for p in procs + [gemm]:
        p.reply()
    rates = []
    for r in range(args.rounds):  # interleaved, the order rotating so no path always follows the same one
        rates.append(gemm.ask("time"))
        for p in procs[r % len(procs):] + procs[:r % len(procs)]:
            p.times.append(p.ask("time"))
    logps = {p.kind: p.ask("logp") for p in procs if p.kind in ("gptquant", "ct2", "torch")}
    for p in procs + [gemm]:
        p.stop()
    report(args, cfg, ids, procs, rates, logps)


def report(args, cfg, ids, procs, rates, logps) -> None:
    import numpy as np

    ceiling = max(rates)
    tokens = sum(len(x) for x in ids)
    print(f"\n== {len(ids)} Astock news texts, {tokens} tokens (<= {args.max_length} each), threads={args.threads}, "
          f"best of {args.rounds} interleaved passes")
    print(f"int8 GEMM ceiling (onnxruntime MatMulInteger u8 x s8, best of {GEMM_SHAPES}): {ceiling / 1e9:.1f} GOP/s "
          f"(rounds: {', '.join(f'{x / 1e9:.1f}' for x in rates)})")
    base = next((p for p in procs if p.kind == "ct2"), None)
    print(f"{'path':50s} {'tok/s':>8s} {'median':>8s} {'x CT2':>7s} {'GFLOP/s':>8s} {'ceiling':>8s}")
    summary = {}
    for p in procs:
        flops = sum(forward_flops(cfg, len(x), lm_head=p.kind != "sentiment") for x in ids)
        best, med = tokens / min(p.times), tokens / float(np.median(p.times))
        vs = best / (tokens / min(base.times)) if base else float("nan")
        share = share_of_ceiling(best, flops / tokens, ceiling)
        print(f"{p.name:50s} {best:8.0f} {med:8.0f} {vs:7.2f} {best * flops / tokens / 1e9:8.1f} {share:8.1%}")
        summary[p.kind] = {"tok_per_s": round(best), "x_ct2": round(vs, 3), "ceiling_share": round(share, 3)}
    pairs = [("gptquant", "ct2"), ("gptquant", "torch"), ("ct2", "torch")]
    for a, b in pairs:
        if a in logps and b in logps:
            agree = logprob_agreement(logps[a], logps[b])
            summary[f"logp_{a}_vs_{b}"] = agree
            print(f"per-token log-prob |delta| {a} vs {b}: mean {agree['mean_abs']:.4f}, max {agree['max_abs']:.4f} "
                  f"over {agree['tokens']} tokens")
    print("\nsummary:", json.dumps(summary))


if __name__ == "__main__":
    main()
