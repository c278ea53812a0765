"""Sentiment quality on FinFE and CFSC (../shared/data) with ../shared/models/gpt2-zh-fin-mini:
accuracy and macro-F1 on a fixed test split for ptuning, finetune, linear and the TF-IDF baseline,
on all training rows and with 32 shots per class, plus the int8 bundle of the best GPT head against
its fp32 bundle, and an evaluation-only blend of the best GPT head with the baseline.

  python benchmarks/sentiment_quality.py [--datasets finfe,cfsc] [--steps 300] [--out results.json]

Split: stratified 70/10/20 (train/validation/test) of the shared rows, seed 20240601; CFSC is split by
sentence (no sentence on both sides) and its input is "term：sentence". Goal: the best GPT method beats
the baseline on both sets; int8 within 0.5 points of fp32. Prints measured numbers only.
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
SEED = 20240601


def load(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows (text, label_name[, term]) and a group id per row for a split that keeps groups together."""
    if name == "finfe":
        df = pd.read_csv(SHARED / "data" / "fincuge_finfe" / "finfe.csv")
        return df[["text", "label_name"]], np.arange(len(df))
    df = pd.read_csv(SHARED / "data" / "cfsc_absa" / "cfsc_absa.csv")
    return df[["sentence", "term", "label_name"]], df["sentence_id"].to_numpy()


def split(df: pd.DataFrame, groups: np.ndarray):
    from sklearn.model_selection import train_test_split

    uniq = pd.Series(groups).drop_duplicates()
    first = pd.Series(df["label_name"].to_numpy(), index=groups).groupby(level=0).first().loc[uniq.to_numpy()]
    rest, test = train_test_split(uniq.to_numpy(), test_size=0.2, random_state=SEED, stratify=first.to_numpy())
    train, valid = train_test_split(rest, test_size=0.125, random_state=SEED, stratify=first.loc[rest].to_numpy())
    pick = lambda g: df[np.isin(groups, g)].reset_index(drop=True)  # noqa: E731
    return pick(train), pick(valid), pick(test)


def blend(p_gpt_val, p_base_val, y_val, p_gpt, p_base):
    """Weighted mean of log-probs, weight chosen on validation macro-F1 (evaluation-only; not in a bundle)."""
    from gptquant.lm import metrics as M

    labels = [str(k) for k in range(p_gpt.shape[1])]
    best = max(np.linspace(0, 1, 11), key=lambda w: M.classification_report(
        y_val, np.exp(w * np.log(p_gpt_val + 1e-12) + (1 - w) * np.log(p_base_val + 1e-12)), labels)["macro_f1"])
    return float(best), np.exp(best * np.log(p_gpt + 1e-12) + (1 - best) * np.log(p_base + 1e-12))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="finfe,cfsc")
    ap.add_argument("--methods", default="linear,ptuning,finetune")
    ap.add_argument("--shot-methods", help="methods for the few-shot setting (default: --methods)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--finetune-steps", type=int, default=200)
    ap.add_argument("--shots", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="smoke run: at most this many rows per split")
    ap.add_argument("--out", help="write all figures as JSON here")
    args = ap.parse_args()
    if not MODEL.is_dir():
        print(f"needs {MODEL}")
        return 2
    from gptquant.lm import metrics as M
    from gptquant.lm import sentiment as S
    from gptquant.lm.baseline import Baseline
    from gptquant.lm.export import export_bundle

    results = {}
    work = Path(tempfile.mkdtemp(prefix="gptquant-sentq-"))
    for ds in args.datasets.split(","):
        df, groups = load(ds)
        train, valid, test = split(df, groups)
        if args.limit:
            train, valid, test = (f.sample(min(len(f), args.limit), random_state=0) for f in (train, valid, test))
        paths = {}
        for part, frame in (("train", train), ("valid", valid), ("test", test)):
            paths[part] = work / f"{ds}-{part}.csv"
            frame.to_csv(paths[part], index=False)
        print(f"\n== {ds}: train {len(train)}, validation {len(valid)}, test {len(test)} rows", flush=True)
        res = results[ds] = {"rows": {"train": len(train), "valid": len(valid), "test": len(test)}}
        _, y_val, labels = S.read_labelled(paths["valid"])
        for setting, shots in (("all", None), (f"{args.shots}-shot", args.shots)):
            for method in (args.methods if shots is None else args.shot_methods or args.methods).split(","):
                out = work / f"{ds}-{setting}-{method}"
                t0 = time.perf_counter()
                steps = args.finetune_steps if method == "finetune" else args.steps
                summary = S.train_sentiment(MODEL, paths["train"], out, method, valid=paths["valid"], shots=shots,
                                            steps=steps, batch=16, max_length=128, eval_every=50, patience=4,
                                            seed=0, threads=args.threads, progress=False)
                ev = S.evaluate([out], paths["test"])
                name = f"{setting} {method}"
                gpt = next(v for k, v in ev.items() if "baseline" not in k)
                base = next(v for k, v in ev.items() if "baseline" in k)
                res[name] = {**gpt, "train_seconds": time.perf_counter() - t0,
                             "steps_run": json.loads((out / S.HEAD_JSON).read_text())["training"]["steps_run"]}
                res[f"{setting} tfidf baseline"] = base
                print(f"{name:<24} acc {gpt['accuracy']:.4f}  macroF1 {gpt['macro_f1']:.4f}  ECE {gpt['ece']:.4f}  "
                      f"(baseline acc {base['accuracy']:.4f} F1 {base['macro_f1']:.4f}; {time.perf_counter() - t0:.0f}s)",
                      flush=True)
            gpts = [k for k in res if k.startswith(f"{setting} ") and "baseline" not in k and "blend" not in k]
            best = max(gpts, key=lambda k: res[k]["macro_f1"])
            res[f"{setting} best"] = best
            # evaluation-only blend of the best GPT head with the baseline (weight fitted on validation)
            out = work / f"{ds}-{setting}-{best.split()[-1]}"
            texts_v, _, _ = S.read_labelled(paths["valid"], labels=labels)
            texts_t, y_t, _ = S.read_labelled(paths["test"], labels=labels)
            pv, _ = S.predict_probs(out, texts_v)
            pt, _ = S.predict_probs(out, texts_t)
            b = Baseline.load(out / S.BASELINE_JSON)
            bv, bt = np.exp(M.log_softmax(b.logits(texts_v))), np.exp(M.log_softmax(b.logits(texts_t)))
            w, pb = blend(pv, bv, y_val, pt, bt)
            res[f"{setting} blend"] = {**M.classification_report(y_t, pb, labels), "gpt_weight": w}
            print(f"{setting + ' blend':<24} acc {res[setting + ' blend']['accuracy']:.4f}  macroF1 "
                  f"{res[setting + ' blend']['macro_f1']:.4f}  (GPT weight {w:.1f})", flush=True)
        # int8 vs fp32 bundles of the best all-rows head, on the test split
        best_dir = work / f"{ds}-all-{res['all best'].split()[-1]}"
        for precision in ("fp32", "int8"):
            bdir = work / f"{ds}-bundle-{precision}"
            try:
                manifest = export_bundle(best_dir, bdir, int8=precision == "int8", max_length=256)
            except Exception as exc:  # the int8 gate may refuse: that is a result too
                res[f"bundle {precision}"] = {"refused": str(exc)}
                print(f"bundle {precision}: refused: {exc}")
                continue
            ev = S.evaluate([bdir], paths["test"], baseline=False)
            r = next(iter(ev.values()))
            r["parity"] = manifest["parity"].get(precision, manifest["parity"]["fp32"])
            res[f"bundle {precision}"] = r
            print(f"bundle {precision:<17} acc {r['accuracy']:.4f}  macroF1 {r['macro_f1']:.4f}", flush=True)
        if "accuracy" in res.get("bundle int8", {}) and "accuracy" in res.get("bundle fp32", {}):
            texts_t, _, _ = S.read_labelled(paths["test"], labels=labels)
            p32, _ = S.predict_probs(work / f"{ds}-bundle-fp32", texts_t)
            p8, _ = S.predict_probs(work / f"{ds}-bundle-int8", texts_t)
            res["int8 vs fp32"] = {"label_agreement": float((p32.argmax(1) == p8.argmax(1)).mean()),
                                   "prob_max_abs": float(np.abs(p32 - p8).max()),
                                   "prob_mean_abs": float(np.abs(p32 - p8).mean()),
                                   "accuracy_points": 100 * (res["bundle int8"]["accuracy"] - res["bundle fp32"]["accuracy"])}
            print("int8 vs fp32 on test: " + ", ".join(f"{k} {v:.4f}" for k, v in res["int8 vs fp32"].items()), flush=True)

    print("\n| dataset | setting | method | accuracy | macro-F1 |\n|---|---|---|---|---|")
    for ds, res in results.items():
        for k, r in res.items():
            if isinstance(r, dict) and "accuracy" in r:
                setting, _, method = k.partition(" ")
                print(f"| {ds} | {setting} | {method} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    print(f"(work files in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
