"""Scoring throughput, one run, same texts: torch fp32 eager vs the fp32 bundle vs the int8 bundle,
end to end (tokenize -> run -> per-article features), plus bare session.run on pre-tokenised batches.

  python benchmarks/score_throughput.py [--threads 2] [--batches 8] [--configs uer,mini]
  python benchmarks/score_throughput.py --sentiment-only --configs mini --batches 8 [--threads 1]

(a) `uer`: the uer/gpt2-chinese-cluecorpussmall shape (12 x 768, vocab 21128) with random weights;
(b) `mini`: ../shared/models/gpt2-zh-fin-mini. Batch 32 x ~128 tokens. Each engine runs in its own
process so peak RSS is its own. Targets: int8 >= 3.5x torch fp32 on uer; end-to-end >= 90 % of bare run.

--sentiment-only instead compares, end to end, an int8 bundle with a P-tuned head (a few training steps on
synthetic demo-world news: weights do not change the cost) against the int8 sentiment-only bundle of the
same checkpoint (`gptquant export --sentiment-only`), on 32 x --batches texts.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))
MINI = SHARED / "models" / "gpt2-zh-fin-mini"
VOCAB_DIR = SHARED / "data" / "chinese_bert_vocab"


def texts_of_about(n_texts: int, n_tokens: int = 127) -> list[str]:
    """~n_tokens characters per text (one token per Chinese character) from real news where present."""
    news = SHARED / "data" / "astock_news" / "astock_news.csv"
    if news.is_file():
        import pandas as pd

        pool = "".join(pd.read_csv(news, usecols=["text"])["text"].astype(str).tolist())
    else:
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import demo_texts

        pool = "".join(demo_texts(2000))
    return [pool[i * n_tokens:(i + 1) * n_tokens] for i in range(n_texts)]


def make_uer_checkpoint(root: Path) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    d = root / "uer-random"
    d.mkdir(parents=True, exist_ok=True)
    for f in ("vocab.txt",):
        shutil.copyfile(VOCAB_DIR / f, d / f)
    (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "tokenizer_class": "BertTokenizer"}))
    cfg = GPT2Config.from_json_file(str(VOCAB_DIR / "uer_gpt2_chinese_cluecorpussmall_config.json"))
    torch.manual_seed(0)
    GPT2LMHeadModel(cfg).save_pretrained(d)
    return d


def child(engine: str, target: str, threads: int, batches: int) -> dict:
    """Runs in a fresh process: time one engine on the same texts; report tok/s and peak RSS."""

    texts = texts_of_about(32 * batches)
    out = {"engine": engine}
    if engine == "torch":
        import torch

        from gptquant.lm.checkpoint import load_checkpoint
        from gptquant.lm.export import feature_graph
        from gptquant.tokenize import encode

        torch.set_num_threads(threads)
        ckpt = load_checkpoint(target)
        graph = feature_graph(ckpt.model)
        n_tok = 0

        def run(batch):
            ids, mask, _ = encode(ckpt.tokenizer, batch, ckpt.policy, 128)
            with torch.no_grad():
                o = graph(torch.from_numpy(ids), torch.from_numpy(mask))
            m = mask[:, 1:].astype(bool)
            return int(m.sum()), float(-o[0].numpy()[m].mean())

        run(texts[:32])  # warm-up
        t = time.perf_counter()
        for i in range(batches):
            n, _ = run(texts[i * 32:(i + 1) * 32])
            n_tok += n
        out["seconds"] = time.perf_counter() - t
    else:
        from gptquant.runtime import Scorer

        scorer = Scorer(target, threads=threads, batch_size=32)
        scorer.score(texts[:32])  # warm-up
        if engine == "bare":
            from gptquant.tokenize import pad_batch

            feeds = []
            for i in range(batches):
                ids, mask, _ = pad_batch(scorer.encode(texts[i * 32:(i + 1) * 32])[0], scorer.max_length, scorer.pad_id)
                feeds.append({"input_ids": ids, "attention_mask": mask})
            t = time.perf_counter()
            for f in feeds:
                scorer.session.run(None, f)
            out["seconds"] = time.perf_counter() - t
            n_tok = int(sum(f["attention_mask"][:, 1:].sum() for f in feeds))
        else:
            t = time.perf_counter()
            df = scorer.score(texts)
            out["seconds"] = time.perf_counter() - t
            n_tok = int(df["n_tokens"].sum())
            if "nll_mean" in df.columns:  # absent from sentiment-only bundles
                out["nll_mean"] = float(df["nll_mean"].mean())
            if "sentiment" in df.columns:
                out["sentiment_mean"] = float(df["sentiment"].mean())
    out["tokens"] = n_tok
    out["tok_per_s"] = n_tok / out["seconds"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(engine, target, threads, batches) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, str(target), "--threads", str(threads), "--batches", str(batches)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench(name: str, ckpt: Path, root: Path, threads: int, batches: int) -> dict:
    from gptquant.lm.export import export_bundle

    t = time.time()
    fp32 = root / f"{name}-fp32"
    int8 = root / f"{name}-int8"
    m32 = export_bundle(ckpt, fp32, int8=False, max_length=128)
    m8 = export_bundle(ckpt, int8, int8=True, max_length=128)
    export_s = time.time() - t
    rows = {"torch fp32 eager": run_child("torch", ckpt, threads, batches),
            "ORT fp32 bundle": run_child("score", fp32, threads, batches),
            "ORT int8 bundle": run_child("score", int8, threads, batches),
            "ORT int8 bare session.run": run_child("bare", int8, threads, batches)}
    base = rows["torch fp32 eager"]["tok_per_s"]
    print(f"\n== {name}: {m32['source']['architecture']}  threads={threads}  batches={batches}x32  export {export_s:.0f}s")
    print(f"{'engine':30s} {'tok/s':>9s} {'x torch':>8s} {'peak RSS MB':>12s}")
    for k, r in rows.items():
        print(f"{k:30s} {r['tok_per_s']:9.0f} {r['tok_per_s'] / base:8.2f} {r['peak_rss_mb']:12.0f}")
    e2e = rows["ORT int8 bundle"]["tok_per_s"] / rows["ORT int8 bare session.run"]["tok_per_s"]
    print(f"end-to-end / bare session.run (int8): {e2e:.2%}")
    print(f"int8 parity vs torch fp32: {json.dumps(m8['parity']['int8'])}")
    return {"rows": rows, "e2e_over_bare": e2e, "int8_over_torch": rows["ORT int8 bundle"]["tok_per_s"] / base}


def bench_sentiment_only(name: str, ckpt: Path, root: Path, threads: int, batches: int) -> dict:
    """Full int8 bundle with a P-tuned head vs the sentiment-only int8 bundle of the same checkpoint."""
    import numpy as np
    import pandas as pd

    from gptquant.demo_world import LABELS, write_article
    from gptquant.lm.export import export_bundle
    from gptquant.lm.sentiment import train_sentiment

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    data = root / f"{name}-labelled.csv"
    pd.DataFrame({"text": [write_article("样本公司", int(k), rng) for k in y], "label": [LABELS[k] for k in y]}
                 ).to_csv(data, index=False)
    head = root / f"{name}-ptuned"
    train_sentiment(ckpt, data, head, "ptuning", steps=2, eval_every=2, batch=8, max_length=128, progress=False)
    full, only = root / f"{name}-int8-full", root / f"{name}-int8-sentiment-only"
    mf = export_bundle(head, full, int8=True, max_length=128)
    mo = export_bundle(head, only, int8=True, max_length=128, sentiment_only=True)
    rows = {"ORT int8 full bundle": run_child("score", full, threads, batches),
            "ORT int8 sentiment-only bundle": run_child("score", only, threads, batches)}
    base = rows["ORT int8 full bundle"]["tok_per_s"]
    print(f"\n== {name}: P-tuned head, int8, threads={threads}, {batches}x32 texts")
    print(f"{'engine':32s} {'tok/s':>9s} {'x full':>8s} {'peak RSS MB':>12s} {'mean sentiment':>15s}")
    for k, r in rows.items():
        print(f"{k:32s} {r['tok_per_s']:9.0f} {r['tok_per_s'] / base:8.2f} {r['peak_rss_mb']:12.0f} "
              f"{r.get('sentiment_mean', float('nan')):15.4f}")
    print(f"int8 parity vs torch fp32: full {json.dumps({k: mf['parity']['int8'][k] for k in ('sent_prob_max_abs', 'sent_label_agreement')})}; "
          f"sentiment-only {json.dumps({k: mo['parity']['int8'][k] for k in ('sent_prob_max_abs', 'sent_label_agreement')})}")
    return {"rows": rows, "sentiment_only_over_full": rows["ORT int8 sentiment-only bundle"]["tok_per_s"] / base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--configs", default="uer,mini")
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "TARGET"))
    ap.add_argument("--sentiment-only", action="store_true",
                    help="compare a full int8 bundle with a P-tuned head against its sentiment-only int8 bundle")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.threads, args.batches)))
        return
    if not VOCAB_DIR.is_dir():
        raise SystemExit(f"needs {SHARED} (the shared data folder)")
    with tempfile.TemporaryDirectory(prefix="gptquant-bench-") as tmp:
        root = Path(tmp)
        results = {}
        for name in args.configs.split(","):
            ckpt = make_uer_checkpoint(root) if name == "uer" else MINI
            if args.sentiment_only:
                results[name] = bench_sentiment_only(name, ckpt, root, args.threads, args.batches)
                continue
            results[name] = bench(name, ckpt, root, args.threads, args.batches)
        if args.sentiment_only:
            print("\nsummary:", json.dumps({k: {"sentiment_only_over_full": round(v["sentiment_only_over_full"], 2)}
                                                 for k, v in results.items()}))
            return
        print("\nsummary:", json.dumps({k: {"int8_over_torch": round(v["int8_over_torch"], 2),
                                             "e2e_over_bare": round(v["e2e_over_bare"], 3)} for k, v in results.items()}))


if __name__ == "__main__":
    main()
