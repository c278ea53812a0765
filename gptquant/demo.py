"""`gptquant demo`: the embedded default job on a world this project generates itself.

Stages (each the same code a user's verb runs): make the demo world -> `lm pretrain` a tiny GPT-2 on
its corpus -> `export --int8` -> `score` the news -> `panel` -> `analyze`. Everything lands in --out,
with summary.json holding each stage's figures and wall time.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .bundle import atomic_write_text


def configure(verb, parser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--minutes", type=float, default=1.0, help="pretraining time budget (default 1 minute)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime/torch threads (default: all cores)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    summary = run_demo(args.out, minutes=args.minutes, seed=args.seed, threads=args.threads)
    print(json.dumps({k: v for k, v in summary.items() if k != "paths"}, ensure_ascii=False, indent=1))
    print(f"demo outputs in {args.out}/")
    return 0


class _Stages:
    """Times each stage and keeps its figures for summary.json."""

    def __init__(self):
        self.summary = {"stages": {}}

    def __call__(self, name):
        stages = self.summary["stages"]

        class _Stage:
            def __enter__(self_):
                print(f"[demo] {name} ...", flush=True)
                self_.t0 = time.time()
                self_.info = {}
                return self_.info

            def __exit__(self_, *exc):
                stages[name] = {"seconds": round(time.time() - self_.t0, 2), **self_.info}
                return False

        return _Stage()


def run_demo(out="demo_out", minutes: float = 1.0, seed: int = 7, threads: int | None = None) -> dict:
    from .demo_world import make_world
    from .errors import require

    require("torch", "train", "the demo's pretraining step")
    from .lm.export import export_bundle
    from .lm.generate import sample
    from .lm.checkpoint import load_checkpoint
    from .lm.pretrain import pretrain

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = _Stages()
    with stage("world") as info:
        paths = make_world(out / "world", seed=seed)
        info["files"] = {k: str(Path(v).relative_to(out)) for k, v in paths.items()}
    model_dir, bundle_dir = out / "model", out / "models" / "demo-int8"
    with stage("pretrain") as info:
        print(f"       = gptquant lm pretrain --config tiny --corpus {paths['corpus']} --out {model_dir} --minutes {minutes}")
        info.update(pretrain(model_dir, paths["corpus"], config="tiny", minutes=minutes, epochs=4, block=64,
                             batch=16, lr=3e-3, seed=seed, vocab_size=3000, resume=False, threads=threads))
        info["sample"] = "公司公告，" + sample(load_checkpoint(model_dir), "公司公告，", max_new_tokens=30, seed=seed)
    with stage("export") as info:
        print(f"       = gptquant export {model_dir} --out {bundle_dir} --int8 --max-length 128")
        manifest = export_bundle(model_dir, bundle_dir, int8=True, max_length=128, exporter="torchscript")
        info.update(precision=manifest["precision"], parity=manifest["parity"]["int8"])
    features_path = out / "features.parquet"
    with stage("score") as info:
        from .runtime import Scorer
        from .runtime.news import read_news

        news, rejects = read_news(paths["news"])
        scorer = Scorer(bundle_dir, threads=threads)
        feats = scorer.score(news["text"])
        feats.insert(0, "article_id", news["article_id"].to_numpy())
        _write_parquet(feats, features_path)
        info.update(articles=len(feats), rejected=len(rejects), tokens_per_second=round(scorer.tokens_per_second, 1),
                    nll_mean=float(feats["nll_mean"].mean()), ppl_median=float(feats["ppl"].median()))
    with stage("panel") as info:
        from .features.panel import build_panel

        panel, prej = build_panel(feats, news, return_rejects=True)
        _write_parquet(panel, out / "panel.parquet")
        info.update(rows=len(panel), columns=len(panel.columns), rejected=len(prej))
    with stage("analyze") as info:
        from .analysis.factor import analyze
        from .market.prices import load_bars

        bars = load_bars(paths["prices"])
        column = "sentiment_ewm" if "sentiment_ewm" in panel.columns else "nll_mean_ewm"
        result = analyze(panel, column, bars, horizons=(1, 5))
        atomic_write_text(out / "analysis.json", json.dumps(result, ensure_ascii=False, indent=1))
        info.update(column=column, ic_summary=result["ic_summary"]["rank_ic"])
    summary = stage.summary
    summary["paths"] = {"bundle": str(bundle_dir), "features": str(features_path), "panel": str(out / "panel.parquet")}
    atomic_write_text(out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return summary


def _write_parquet(frame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp)
    tmp.replace(path)
