"""`gptquant demo`: the embedded default job on a world this project generates itself.

Stages, each the same code a user's verb runs: make the demo world (news whose sentiment really moves
later returns) -> `lm pretrain` a tiny GPT-2 on its corpus -> `train sentiment --method ptuning` on
its labelled set -> `export --int8` (fp32 when the int8 parity gate refuses the tiny model) -> `nightly backtests/demo.toml` (score with cache, point-in-time
panel, factor analysis, backtests, HTML report). summary.json holds each stage's figures and time.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .bundle import atomic_write_text
from .errors import GptquantError

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "backtests" / "demo.toml"
PRETRAIN_EPOCHS = 4.0


def configure(verb, parser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--epochs", type=float, default=PRETRAIN_EPOCHS,
                        help=f"pretraining passes over the demo corpus (default {PRETRAIN_EPOCHS:g}: about a minute on one "
                             "quiet core; a fixed amount of work, so the result does not depend on the machine's load)")
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps instead of epochs")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop pretraining after this many minutes as well (faster, but the model, and so every "
                             "figure after it, then depends on how busy the machine is)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/onnxruntime threads (default 1: the demo's tiny model gains nothing from more, and "
                             "with another busy process on 2 cores a second thread made training 24x slower here)")
    parser.add_argument("--config", default=str(DEMO_CONFIG), help="nightly config run on the demo world")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    summary = run_demo(args.out, minutes=args.minutes, steps=args.steps, epochs=args.epochs, seed=args.seed,
                       threads=args.threads, config=args.config)
    print(json.dumps(summary["headline"], ensure_ascii=False, indent=1))
    print(f"report: {summary['headline']['report']}")
    return 0 if summary["headline"]["status"] == "ok" else 1


@contextmanager
def _stage(summary: dict, name: str):
    print(f"[demo] {name} ...", flush=True)
    info: dict = {}
    t0 = time.time()
    yield info
    summary["stages"][name] = {"seconds": round(time.time() - t0, 2), **info}


def run_demo(out="demo_out", minutes: float | None = None, steps: int | None = None,
             epochs: float = PRETRAIN_EPOCHS, seed: int = 7, threads: int | None = 1, config=DEMO_CONFIG) -> dict:
    """The demo's stages into `out`. Pretraining runs `steps` or `epochs` passes (the same work on any machine,
    so the same figures); `minutes` caps it by the clock as well, which makes them depend on the load."""
    from .demo_world import LABELS, make_world
    from .errors import require

    require("torch", "train", "the demo's training steps")
    from .jobs.nightly import run_nightly
    from .lm.checkpoint import load_checkpoint
    from .lm.export import export_bundle
    from .lm.generate import sample
    from .lm.pretrain import pretrain
    from .lm.sentiment import train_sentiment

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not Path(config).is_file():
        raise GptquantError(f"{config}: demo nightly config not found (run the demo from the repository)")
    summary: dict = {"stages": {}}
    model_dir, head_dir, bundle_dir = out / "model", out / "model-sentiment", out / "models" / "demo"
    with _stage(summary, "world") as info:
        paths = make_world(out / "world", seed=seed)
        info["files"] = {k: str(Path(v).relative_to(out)) for k, v in paths.items()}
    with _stage(summary, "pretrain") as info:
        how = f"--steps {steps}" if steps else f"--epochs {epochs:g}"
        print(f"       = gptquant lm pretrain --config tiny --corpus {paths['corpus']} --out {model_dir} {how}"
              + (f" --minutes {minutes:g}" if minutes else ""))
        info.update(pretrain(model_dir, paths["corpus"], config="tiny", steps=steps, minutes=minutes,
                             epochs=epochs, block=64, batch=16, lr=3e-3, seed=seed, vocab_size=3000, resume=False,
                             threads=threads, progress=False))
        info["sample"] = "公司公告，" + sample(load_checkpoint(model_dir), "公司公告，", max_new_tokens=30, seed=seed)
    with _stage(summary, "sentiment") as info:
        print(f"       = gptquant train sentiment --model {model_dir} --data {paths['labelled']} --method ptuning --out {head_dir}")
        res = train_sentiment(model_dir, paths["labelled"], head_dir, method="ptuning", labels=list(LABELS), steps=500,
                              batch=16, lr=1e-2, max_length=64, patience=20, seed=seed, resume=False, progress=False,
                              threads=threads)
        info.update(validation=res["validation"], baseline_validation=res.get("baseline_validation"))
    with _stage(summary, "export") as info:
        print(f"       = gptquant export {head_dir} --out {bundle_dir} --int8 --max-length 128")
        try:
            manifest = export_bundle(head_dir, bundle_dir, int8=True, max_length=128, exporter="torchscript")
        except GptquantError as exc:  # the parity gate refused int8 (a 64-wide model quantises poorly): use fp32
            print(f"       {exc}\n       = gptquant export {head_dir} --out {bundle_dir} --max-length 128  (fp32)")
            info["int8_refused"] = str(exc)
            manifest = export_bundle(head_dir, bundle_dir, int8=False, max_length=128, exporter="torchscript")
        info.update(precision=manifest["precision"], labels=manifest.get("labels"),
                    parity=manifest["parity"].get(manifest["precision"]))
    with _stage(summary, "nightly") as info:
        print(f"       = GPTQUANT_DEMO_OUT={out} gptquant nightly {config}")
        os.environ["GPTQUANT_DEMO_OUT"] = str(out)
        if threads:
            os.environ.setdefault("GPTQUANT_THREADS", str(threads))
        run = run_nightly(config, force=True, progress=False)
        info.update({k: run.get(k) for k in ("run_id", "status", "failed", "report", "timings")})
    summary["headline"] = _headline(run)
    atomic_write_text(out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return summary


def _headline(run: dict) -> dict:
    """The figures a reader checks first: mean IC of the traded column and each strategy vs its benchmark."""
    analysis = run.get("analysis") or {}
    head = {"status": run.get("status"), "report": run.get("report"), "column": analysis.get("column"),
            "ic_mean": analysis.get("ic"), "rank_ic_mean": analysis.get("rank_ic")}
    for bt in run.get("backtests") or []:
        s = bt.get("summary") or {}
        head[bt["name"]] = {"status": bt["status"], **{k: s.get(k) for k in (
            "total_return", "benchmark_return", "annual_return", "sharpe", "max_drawdown")}}
    return head
