"""Machine-written-text detection: AUROC of ai_score and of each zero-shot statistic alone, human-written
astock_news vs LM-rewritten CSMD news (../shared/data), scored by an int8 bundle of
../shared/models/gpt2-zh-fin-mini. AUROC is measured on a test split the detector never saw.

  python benchmarks/ai_text_detection.py [--limit 1500] [--threads 2] [--parity 200] [--out results.json]

Goal: >= 0.95. ai_score is what `gptquant train detector` ships (features auto: statistics, pooled hidden
state or both, chosen on the validation split). Also printed: the test AUROC of each feature set, and
the int8 graph's ai_score against torch fp32 features on --parity test texts (|dprob| and label
agreement at 0.5), the figures export adds to an int8 bundle's parity when the detector travels with the
checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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
    ap.add_argument("--parity", type=int, default=200, help="test texts for the int8 vs fp32 ai_score check")
    ap.add_argument("--out")
    args = ap.parse_args()
    for p in (MODEL, HUMAN, MACHINE):
        if not p.exists():
            print(f"needs {p}")
            return 2
    work = Path(tempfile.mkdtemp(prefix="gptquant-aidet-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> int:
    from gptquant.lm import detector as D
    from gptquant.lm.data import read_texts
    from gptquant.lm.export import export_bundle
    from gptquant.runtime.scorer import Scorer

    export_bundle(MODEL, work / "bundle", int8=True, max_length=256)
    scorer = Scorer(work / "bundle", threads=args.threads)
    human = read_texts(HUMAN, limit=args.limit, seed=args.seed)
    machine = read_texts(MACHINE, limit=args.limit, seed=args.seed)
    t0 = time.perf_counter()
    (fh, ph), (fm, pm) = D._score(scorer, human, pooled=True), D._score(scorer, machine, pooled=True)
    seconds = time.perf_counter() - t0
    feats, pooled = pd.concat([fh, fm], ignore_index=True), np.concatenate([ph, pm])
    y = np.r_[np.zeros(len(human)), np.ones(len(machine))]
    det, report = D.fit_detector(feats, y, seed=args.seed, pooled=pooled)
    print(f"astock (human) {len(human)} vs CSMD (machine) {len(machine)}; scored in {seconds:.0f}s; "
          f"train/valid/test {report['n_train']}/{report['n_valid']}/{report['n_test']} (test never seen); "
          f"{report['excluded_undefined']} excluded as undefined")
    print("validation AUROC by feature set: " + ", ".join(f"{k} {v:.4f}" for k, v in report["valid_auroc"].items())
          + f" -> ships {report['features']}")
    print("\n| feature | test AUROC |\n|---|---|")
    for k, v in report["test_auroc"].items():
        print(f"| {k}{' (' + report['features'] + ')' if k == 'ai_score' else ''} | {v:.4f} |")
    print(f"ai_score test ECE {report['test_ece']:.4f}")
    by_set = {}
    for name in D.FEATURE_SETS:
        _, rep = D.fit_detector(feats, y, seed=args.seed, pooled=pooled, features=name)
        by_set[name] = rep["test_auroc"]["ai_score"]
    print("test AUROC by feature set (each forced): " + ", ".join(f"{k} {v:.4f}" for k, v in by_set.items()))

    fig = int8_parity(det, human, machine, y, work / "bundle" / "model.onnx", args)
    print(f"int8 graph vs torch fp32, ai_score on {fig['n']} test texts: max |dprob| {fig['max']:.4f}, "
          f"mean |dprob| {fig['mean']:.4f}, label agreement at 0.5 {fig['agreement']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"report": report, "by_feature_set": by_set, "int8_parity": fig,
                                              "detector": det}, indent=2))
    return 0


def int8_parity(det, human, machine, y, model, args) -> dict:
    """ai_score from torch fp32 features vs from the int8 graph, on test-split texts, in small batches."""
    from sklearn.model_selection import train_test_split

    from gptquant.lm.checkpoint import load_checkpoint
    from gptquant.lm.export import feature_graph
    from gptquant.lm.parity import _ai_score, onnx_features, torch_features

    texts = human + machine
    _, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=args.seed, stratify=y)
    pick = [texts[i] for i in np.sort(test)[: args.parity]]
    ckpt = load_checkpoint(MODEL)
    graph = feature_graph(ckpt.model)
    ref, got = [], []
    for b in range(0, len(pick), 16):
        batch = pick[b: b + 16]
        r = torch_features(graph, ckpt, batch, 256)
        g = onnx_features(model, ckpt, batch, 256, threads=args.threads)
        valid = r["mask"][:, 1:].astype(bool)
        ref.append(_ai_score(r, valid, det))
        got.append(_ai_score(g, valid, det))
    ref, got = np.concatenate(ref), np.concatenate(got)
    ok = np.isfinite(ref) & np.isfinite(got)
    d = np.abs(ref[ok] - got[ok])
    return {"n": int(ok.sum()), "max": float(d.max()), "mean": float(d.mean()),
            "agreement": float(((ref[ok] >= 0.5) == (got[ok] >= 0.5)).mean())}


if __name__ == "__main__":
    sys.exit(main())
