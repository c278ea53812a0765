"""P-tuning settings on FinFE (issue 11: "report which settings you tried and what each gave"): anchor
words and label words (fixed 跌/平/涨 vs searched on validation), each trained on sentiment_quality's fixed
stratified 70/10/20 split with ../shared/models/gpt2-zh-fin-mini, prompt 8,8 and 800 steps by default.

  python benchmarks/ptuning_settings.py [--settings none:fixed,这条消息对股价是:fixed,...] [--steps 800]

A setting is ANCHOR:WORDS, ANCHOR "none" or words, WORDS "fixed" (the automatic choice) or "search".
Prints validation and test accuracy / macro-F1 per setting; the test rows only score, never choose.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentiment_quality import MODEL, write_split  # noqa: E402

DEFAULT_SETTINGS = "none:fixed,这条消息对股价是:fixed,情绪：:fixed,none:search,这条消息对股价是:search"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=DEFAULT_SETTINGS)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--prompt", default="8,8")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, help="smoke run: at most this many rows per split")
    ap.add_argument("--out", help="append each setting's figures to this JSON file")
    args = ap.parse_args()
    from gptquant.lm import metrics as M
    from gptquant.lm.data import read_labelled
    from gptquant.lm.evaluate import predict_probs
    from gptquant.lm.headfile import read_head_meta
    from gptquant.lm.sentiment import train_sentiment

    n_prefix, n_suffix = (int(x) for x in args.prompt.split(","))
    work = Path(tempfile.mkdtemp(prefix="gptquant-ptset-"))
    paths, _ = write_split("finfe", work, args.limit)
    _, _, labels = read_labelled(paths["train"])
    te_t, te_y, _ = read_labelled(paths["test"], labels=labels)
    results = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).is_file() else {}
    for setting in args.settings.split(","):
        anchor, _, words = setting.rpartition(":")
        out = work / f"run{len(results)}"
        t0 = time.perf_counter()
        s = train_sentiment(MODEL, paths["train"], out, "ptuning", valid=paths["valid"], steps=args.steps, lr=args.lr,
                            n_prefix=n_prefix, n_suffix=n_suffix, anchor=None if anchor == "none" else anchor,
                            verbalizers="search" if words == "search" else None, threads=args.threads,
                            progress=False, baseline=False)
        probs, _ = predict_probs(out, te_t)
        meta = read_head_meta(out)
        test_r = M.classification_report(te_y, probs, labels)
        results[setting] = {"validation": {k: s["validation"][k] for k in ("accuracy", "macro_f1")},
                            "test": {k: test_r[k] for k in ("accuracy", "macro_f1")},
                            "words": meta["verbalizers"], "steps_run": meta["training"]["steps_run"],
                            "search": meta.get("verbalizer_search"), "seconds": round(time.perf_counter() - t0)}
        r = results[setting]
        print(f"{setting:<24} val acc {r['validation']['accuracy']:.4f} F1 {r['validation']['macro_f1']:.4f}  "
              f"test acc {r['test']['accuracy']:.4f} F1 {r['test']['macro_f1']:.4f}  words "
              f"{'/'.join(r['words'].values())}  {r['steps_run']} steps {r['seconds']}s", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print("\n| anchor:label words | val acc | val F1 | test acc | test F1 | words |\n|---|---|---|---|---|---|")
    for k, r in results.items():
        print(f"| {k} | {r['validation']['accuracy']:.4f} | {r['validation']['macro_f1']:.4f} | "
              f"{r['test']['accuracy']:.4f} | {r['test']['macro_f1']:.4f} | {'/'.join(r['words'].values())} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
