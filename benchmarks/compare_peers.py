"""gptquant int8 against a peer a user would pick instead, in one interleaved run on the same machine:

  python benchmarks/compare_peers.py [--threads 2] [--texts 48] [--rounds 3] [--work DIR] [--no-sentiment]

Same HF checkpoint (a seeded random GPT-2 12 x 768, vocab 21128, the BERT vocabulary: the
uer/gpt2-chinese-cluecorpussmall shape), same real Chinese news (../shared/data/astock_news), same token ids
(gptquant's tokenizer and [CLS] policy, cut to --max-length), same threads. Paths, each in its own process
and timed in turn, round after round (best pass reported):

  gptquant int8        Scorer.score on the full int8 bundle: every LM statistic, pooled states (all features)
  gptquant int8 batch  the same with length-sorted batches instead of one text per run (NOT batch-independent:
                       int8 activation scales span the batch) - what the batch-independence guarantee costs
  ... spinning         the same with onnxruntime's busy-waiting idle threads (its default; the Scorer turns it off)
  ... N procs          `gptquant score --workers N --threads 1`: N single-threaded processes (threads > 1 only)
  sentiment-only       the int8 sentiment-only bundle of a P-tuned head on the same checkpoint (--no-sentiment: skipped)
  CTranslate2 int8     Generator.score_batch on ct2-transformers-converter's int8 model (pip install 'gptquant[bench]'),
                       one replica of N threads, and N replicas of 1 thread (threads > 1)
  torch fp32           the export's feature graph in eager torch, batches of 32 (timed in the first round only)
  int8 GEMM            onnxruntime MatMulInteger (u8 x s8), the model's own shapes: the machine's int8 ceiling

Wall-clock tok/s is what a user gets; tok/CPU-s (tokens per CPU-second of the path's process, all its threads)
is what stays comparable while other work shares the cores. Each path's share of the ceiling (on either basis)
counts the FLOPs its forward pass needs from the shape (forward_flops). The
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
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from peer_paths import GEMM_SHAPES, serve  # noqa: E402


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
    ck = load_checkpoint(ckpt, with_model=False)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(bos_token=ck.tokenizer.id_to_token(ck.policy.bos_id), eos_token=ck.tokenizer.id_to_token(ck.policy.eos_id))
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return cfg


# ---- the driver ----------------------------------------------------------------------------------------

class Worker:
    """One path's process and its pass times."""

    def __init__(self, ctx, name: str, kind: str, spec: dict):
        self.name, self.kind, self.times = name, kind, []
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(kind, spec, child), daemon=False)  # a path may start its own pool
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
        try:
            self.conn.send("stop")
        except OSError:  # it already ended (its error is being reported)
            pass
        self.proc.join(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads of every path (ORT intra-op, CT2 intra, torch)")
    ap.add_argument("--texts", type=int, default=48, help="news articles per pass")
    ap.add_argument("--rounds", type=int, default=3, help="passes per path, interleaved; the best is reported")
    ap.add_argument("--max-length", type=int, default=128, help="tokens per text incl. [CLS] (same cut for all)")
    ap.add_argument("--agree", type=int, default=16, help="texts whose per-token log-probs are compared")
    ap.add_argument("--ct2-batch", type=int, default=1024, help="CTranslate2 max_batch_size in tokens")
    ap.add_argument("--no-sentiment", action="store_true", help="skip the P-tuned head and its sentiment-only bundle")
    ap.add_argument("--no-torch", action="store_true", help="skip torch fp32 (the slowest path)")
    ap.add_argument("--work", help="keep checkpoint, bundles and CT2 model here and reuse them as they are (default: a temp dir); "
                    "empty it after changing the exporter or --max-length")
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
    n = args.threads
    paths = [("gptquant int8, all features", "gptquant", {}),
             ("gptquant int8, batched (not batch-independent)", "gptquant-batch", {})]
    if n > 1:
        paths += [("gptquant int8, all features, spinning threads", "gptquant-spin", {}),
                  (f"gptquant int8, all features, {n} procs x 1 thread", "gptquant-procs", {})]
    if "sentiment" in made:
        paths.append(("gptquant int8, sentiment-only", "sentiment", {"bundle": str(made["sentiment"])}))
    else:
        print("sentiment-only: skipped (--no-sentiment): no sentiment graph in this export")
    if made["ct2_config"] is None:
        print("CTranslate2: not installed (pip install 'gptquant[bench]'): its rows and the log-prob agreement are skipped")
    else:
        paths.append(("CTranslate2 int8 score_batch", "ct2", {}))
        if n > 1:
            paths.append((f"CTranslate2 int8 score_batch, {n} replicas x 1 thread", "ct2-inter", {}))
        print("CTranslate2 config:", json.dumps(made["ct2_config"]), "(multi_query_attention is what 4.x writes for "
              "any num_heads_kv != num_heads, None included: the log-prob agreement below shows full multi-head attention)")
    if not args.no_torch:
        paths.append(("torch fp32 eager", "torch", {}))
    ctx = mp.get_context("spawn")
    procs = [Worker(ctx, name, kind, {**spec, **extra}) for name, kind, extra in paths]
    gemm = Worker(ctx, "int8 GEMM", "gemm", spec)
    try:
        for p in procs + [gemm]:
            p.reply()
        for r in range(args.rounds):  # interleaved, the order rotating so no path always follows the same one
            gemm.times.append(gemm.ask("time"))
            for p in procs[r % len(procs):] + procs[:r % len(procs)]:
                if p.kind != "torch" or r == 0:  # ten times slower than the rest: one pass is enough
                    p.times.append(p.ask("time"))
        logps = {p.kind: p.ask("logp") for p in procs if p.kind in ("gptquant", "ct2", "torch")}
    finally:
        for p in procs + [gemm]:
            p.stop()
    report(args, cfg, ids, procs, gemm.times, logps)


def report(args, cfg, ids, procs, rates, logps) -> None:
    ceiling, ceiling_cpu = max(r[0] for r in rates), max(r[1] for r in rates)
    tokens = sum(len(x) for x in ids)
    print(f"\n== {len(ids)} Astock news texts, {tokens} tokens (<= {args.max_length} each), threads={args.threads}, "
          f"best of {args.rounds} interleaved passes")
    print(f"int8 GEMM ceiling (onnxruntime MatMulInteger u8 x s8, best of shapes {GEMM_SHAPES}): {ceiling / 1e9:.0f} GOP/s, "
          f"{ceiling_cpu / 1e9:.0f} GOP per CPU-second (rounds: {', '.join(f'{r[0] / 1e9:.0f}' for r in rates)})")
    rows = {}
    for p in procs:
        flops = sum(forward_flops(cfg, len(x), lm_head=p.kind != "sentiment") for x in ids) / tokens
        cpu = [t[1] for t in p.times if t[1]]
        tps, tpc = tokens / min(t[0] for t in p.times), (tokens / min(cpu) if cpu else float("nan"))
        rows[p.kind] = {"name": p.name, "tok_per_s": tps, "tok_per_cpu_s": tpc, "ceiling_share": share_of_ceiling(tps, flops, ceiling),
                        "cpu_ceiling_share": share_of_ceiling(tpc, flops, ceiling_cpu), "mflop_per_token": flops / 1e6}
    base = rows.get("ct2", {"tok_per_s": float("nan"), "tok_per_cpu_s": float("nan")})
    print(f"{'path':55s} {'tok/s':>7s} {'x CT2':>6s} {'tok/CPU-s':>9s} {'x CT2':>6s} {'MFLOP/tok':>9s} {'ceiling':>8s} {'CPU ceil':>8s}")
    for r in rows.values():
        r["x_ct2"], r["cpu_x_ct2"] = r["tok_per_s"] / base["tok_per_s"], r["tok_per_cpu_s"] / base["tok_per_cpu_s"]
        print(f"{r['name']:55s} {r['tok_per_s']:7.0f} {r['x_ct2']:6.2f} {r['tok_per_cpu_s']:9.0f} {r['cpu_x_ct2']:6.2f} "
              f"{r['mflop_per_token']:9.1f} {r['ceiling_share']:8.1%} {r['cpu_ceiling_share']:8.1%}")
    summary = {k: {c: round(v, 3) for c, v in r.items() if c != "name"} for k, r in rows.items()}
    for a, b in (("gptquant", "ct2"), ("gptquant", "torch"), ("ct2", "torch")):
        if a in logps and b in logps:
            agree = summary[f"logp_{a}_vs_{b}"] = logprob_agreement(logps[a], logps[b])
            print(f"per-token log-prob |delta| {a} vs {b}: mean {agree['mean_abs']:.4f}, max {agree['max_abs']:.4f} "
                  f"over {agree['tokens']} tokens")
    print("\nsummary:", json.dumps(summary))


if __name__ == "__main__":
    main()
