"""Machine-written-text detection: AUROC of ai_score and of each zero-shot statistic alone, human-written
astock_news vs LM-rewritten CSMD news (../shared/data), scored by an int8 bundle of
../shared/models/gpt2-zh-fin-mini. AUROC is measured on a test split the detector never saw.

  python benchmarks/ai_text_detection.py [--limit 1500] [--threads 2] [--out results.json]

Goal: >= 0.95. Also prints, for context only, the same detector with two more statistics of the same
pass (nll_std, the "burstiness" of per-token surprise; and log length), which are not what ships.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))
MODEL = SHARED / "models" / "gpt2-zh-fin-mini"
HUMAN = SHARED / "data" / "astock_news" / "astock_news.csv"
MACHINE = SHARED / "data" / "csmd_news_prices" / "csmd_news.csv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=1500, help="texts sampled from each corpus")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    for p in (MODEL, HUMAN, MACHINE):
        if not p.exists():
            print(f"needs {p}")
            return 2
    from gptquant.lm import detector as D
    from gptquant.lm.export import export_bundle
    from gptquant.runtime.scorer import Scorer

    work = Path(tempfile.mkdtemp(prefix="gptquant-aidet-"))
    export_bundle(MODEL, work / "bundle", int8=True, max_length=256)
    scorer = Scorer(work / "bundle", threads=args.threads)
    human = D.read_texts(HUMAN, limit=args.limit, seed=args.seed)
    machine = D.read_texts(MACHINE, limit=args.limit, seed=args.seed)
    t0 = time.perf_counter()
    feats = pd.concat([D._score(scorer, human), D._score(scorer, machine)], ignore_index=True)
    seconds = time.perf_counter() - t0
    y = np.r_[np.zeros(len(human)), np.ones(len(machine))]
    det, report = D.fit_detector(feats, y, seed=args.seed)
    print(f"astock (human) {len(human)} vs CSMD (machine) {len(machine)}; scored in {seconds:.0f}s; "
          f"test rows {report['n_test']} (never seen); {report['excluded_undefined']} excluded as undefined")
    print("\n| feature | test AUROC |\n|---|---|")
    for k, v in report["test_auroc"].items():
        print(f"| {k} | {v:.4f} |")
    print(f"ai_score test ECE {report['test_ece']:.4f}")

    extra = {}
    feats = feats.assign(log_n_tokens=np.log(feats["n_tokens"].astype(float)))
    for name, cols in (("+ nll_std", list(D.FEATURES) + ["nll_std"]),
                       ("+ nll_std + log length", list(D.FEATURES) + ["nll_std", "log_n_tokens"])):
        old = D.FEATURES
        D.FEATURES = tuple(cols)
        try:
            _, rep = D.fit_detector(feats, y, seed=args.seed)
        finally:
            D.FEATURES = old
        extra[name] = rep["test_auroc"]["ai_score"]
        print(f"context only, not shipped: ai_score {name}: test AUROC {extra[name]:.4f}")
    # context: a probe on the same pass's pooled hidden state (a style classifier, not a zero-shot statistic)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from gptquant.lm.metrics import auroc

    emb = np.concatenate([scorer.embed(human), scorer.embed(machine)])
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=args.seed, stratify=y)
    mu, sd = emb[tr].mean(0), emb[tr].std(0) + 1e-6
    probe = LogisticRegression(C=0.1, max_iter=3000).fit((emb[tr] - mu) / sd, y[tr])
    extra["pooled-state probe"] = auroc(y[te], probe.decision_function((emb[te] - mu) / sd))
    print(f"context only, not shipped: logistic probe on pooled hidden states: test AUROC {extra['pooled-state probe']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"report": report, "context": extra, "detector": det}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
