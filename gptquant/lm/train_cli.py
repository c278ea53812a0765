"""CLI verbs `train sentiment|detector`, `label market`, `eval sentiment`. Heavy imports inside handlers."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import GptquantError
from ..atomic import atomic_write


def configure(verb: str, parser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    if verb == "train":
        p = sub.add_parser("sentiment", help="train a sentiment head (auto | hybrid | ptuning | finetune | linear) + TF-IDF baseline",
                           description="Train a sentiment head on a labelled table (text, label) and write a checkpoint "
                                       "directory that `gptquant export` turns into a bundle with sent_* columns.")
        p.add_argument("--model", required=True, help="base GPT-2 checkpoint directory")
        p.add_argument("--data", required=True, help="labelled table: CSV/JSONL/Parquet with text and label columns")
        p.add_argument("--out", required=True, help="output checkpoint directory (base model + head; resumable)")
        p.add_argument("--method", choices=["auto", "ptuning", "finetune", "linear", "hybrid"], default="auto",
                       help="auto (default): train linear, hybrid, finetune and ptuning on one split and keep the best "
                            "by validation macro-F1")
        p.add_argument("--labels", help="label names in negative→positive order, comma-separated (e.g. 利空,中性,利好); "
                       "'market': --data is a `label market` table, relabelled by terciles of the training period's "
                       "excess return and split by time (--valid-from)")
        p.add_argument("--text-column")
        p.add_argument("--label-column")
        p.add_argument("--term-column", help="aspect term column: the input becomes 'term：text' (default: 'term' if present)")
        p.add_argument("--valid", help="validation table (default: a stratified --valid-frac of --data)")
        p.add_argument("--valid-frac", type=float, default=0.1,
                       help="share of rows held out for validation when --valid is not given; rows with the same "
                            "text (aspect rows of one sentence) stay on one side")
        p.add_argument("--valid-from", metavar="DATE",
                       help="split by time: rows before DATE train, rows from DATE validate (required with --labels market)")
        p.add_argument("--valid-until", metavar="DATE", help="split by time: rows from DATE on are left out (out-of-time test)")
        p.add_argument("--time-column", help="split by time: the column (default: session if present, else datetime)")
        p.add_argument("--shots", type=int, help="few-shot: sample K training (and K validation) rows per class")
        p.add_argument("--steps", type=int, help="optimiser steps (default: EPOCHS passes over the data, early stopping)")
        p.add_argument("--test", help="auto: a labelled table whose figures join the table (never used to choose)")
        p.add_argument("--methods", help="auto: comma-separated methods to try (default linear,hybrid,finetune,ptuning)")
        p.add_argument("--budget-minutes", type=float,
                       help="auto: skip a gradient method whose measured speed projects past this (default 15; 0 = none)")
        p.add_argument("--batch", type=int, default=16)
        p.add_argument("--lr", type=float, help="learning rate (default 3e-3 ptuning, 1e-4 finetune)")
        p.add_argument("--max-length", type=int, default=128)
        p.add_argument("--eval-every", type=int, help="steps between validation checks (default: 4 per epoch)")
        p.add_argument("--patience", type=int, default=6, help="evaluations without improvement before stopping")
        p.add_argument("--prompt", default="3,3", help="P-tuning template: pseudo tokens before,after the text")
        p.add_argument("--verbalizer", help="label=token pairs, e.g. 利空=跌,中性=平,利好=涨; 'search': chosen among "
                       "candidates by validation macro-F1 (default: 跌/平/涨 for a known label order, else a heuristic)")
        p.add_argument("--anchor", metavar="TEXT", help="P-tuning: fixed task words at the end of the template, "
                       "right before the readout (e.g. 这条消息对股价是; default: none, which measured best on FinFE)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int)
        p.add_argument("--no-resume", action="store_true")
        p.set_defaults(func=_train_sentiment)
        p = sub.add_parser("detector", help="train the machine-written-text detector (ai_score)",
                           description="Fit ai_score on human vs machine-written texts and store it in a bundle's "
                                       "manifest or a checkpoint directory (picked up by export).")
        p.add_argument("--model", required=True, help="bundle directory or checkpoint directory")
        p.add_argument("--human", required=True, help="table of human-written texts")
        p.add_argument("--machine", required=True, help="table of machine-written texts")
        p.add_argument("--text-column")
        p.add_argument("--limit", type=int, help="sample at most this many rows from each table")
        p.add_argument("--out", help="also write the detector JSON here")
        p.add_argument("--features", choices=["auto", "stats", "pooled", "both"], default="auto",
                       help="what the logistic regression reads: the zero-shot statistics, the pooled hidden "
                            "state, both, or auto (the best AUROC on the validation split)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int)
        p.set_defaults(func=_train_detector)
    elif verb == "label":
        p = sub.add_parser("market", help="label news by the forward excess return over a benchmark",
                           description="news (datetime, text, codes) + daily bars -> negative/neutral/positive from the "
                                       "first tradable session's open-to-close excess return over the benchmark.")
        p.add_argument("--news", required=True)
        p.add_argument("--prices", required=True, help="daily bars: file or folder (load_bars format)")
        p.add_argument("--benchmark", required=True, help="benchmark bars with open and close (e.g. CSI 300 file)")
        p.add_argument("--benchmark-code", default="000300.SH")
        p.add_argument("--horizon", type=int, default=1, help="sessions held from the entry open (1 = open to close)")
        p.add_argument("--down", type=float, default=-0.01, help="excess return below this is negative")
        p.add_argument("--up", type=float, default=0.01, help="excess return above this is positive")
        p.add_argument("--cutoff", default="09:30", help="news before this time trades that session")
        p.add_argument("--volume-unit", choices=["shares", "lots"], default="shares")
        p.add_argument("--out", required=True, help="labelled table (.csv or .parquet)")
        p.add_argument("--rejects", help="rejects file (default: OUT with .rejects.csv)")
        p.set_defaults(func=_label_market)
    elif verb == "eval":
        p = sub.add_parser("sentiment", help="accuracy, macro-F1, per-class P/R, confusion, ECE",
                           description="Evaluate one or more trained checkpoints or bundles (and their TF-IDF "
                                       "baselines) on a labelled table: gptquant eval sentiment MODEL [MODEL ...] FILE")
        p.add_argument("paths", nargs="+", metavar="MODEL... FILE")
        p.add_argument("--text-column")
        p.add_argument("--label-column")
        p.add_argument("--term-column")
        p.add_argument("--json", help="write the full report here")
        p.set_defaults(func=_eval_sentiment)


def _pairs(text: str | None) -> dict | None:
    if not text:
        return None
    if text.strip() == "search":
        return "search"
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise GptquantError(f"--verbalizer: expected label=token, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _train_sentiment(args) -> int:
    from .metrics import format_table
    from .sentiment import train_sentiment

    try:
        n_prefix, n_suffix = (int(x) for x in args.prompt.split(","))
    except ValueError:
        raise GptquantError(f"--prompt: expected BEFORE,AFTER counts, got {args.prompt!r}") from None
    data, valid, labels, split_info = _time_split(args)
    summary = train_sentiment(
        args.model, data, args.out, args.method, labels=labels,
        text_column=args.text_column, label_column=args.label_column, term_column=args.term_column, valid=valid,
        valid_frac=args.valid_frac, shots=args.shots, steps=args.steps, batch=args.batch, lr=args.lr,
        max_length=args.max_length, seed=args.seed, eval_every=args.eval_every, patience=args.patience,
        n_prefix=n_prefix, n_suffix=n_suffix, verbalizers=_pairs(args.verbalizer), anchor=args.anchor,
        resume=not args.no_resume,
        threads=args.threads, test=args.test, methods=args.methods.split(",") if args.methods else None,
        budget_minutes=args.budget_minutes)
    if "auto" in summary:
        from .auto import format_auto

        print(f"auto: every method on one split ({summary['validation']['n']} validation rows), the best by "
              "validation macro-F1:")
        print(format_auto(summary["table"], summary["method"]))
    rows = {summary["method"]: summary["validation"]}
    if "baseline_validation" in summary:
        rows["tfidf baseline"] = summary["baseline_validation"]
    print(f"validation ({summary['validation']['n']} rows; temperature {summary['temperature']:.3f}):")
    print(format_table(rows, summary["labels"]))
    if split_info is not None:
        atomic_write(Path(args.out) / "market_split.json", lambda p: Path(p).write_text(
            json.dumps(split_info, ensure_ascii=False, indent=1), encoding="utf-8"))
    print(f"wrote {args.out} (export it with: gptquant export {args.out} --out BUNDLE)")
    return 0


def _time_split(args):
    """(data, valid, labels, split info): --labels market relabels a `label market` table by the training
    period's terciles; --valid-from alone splits any table by time. Otherwise the arguments as given."""
    market = args.labels == "market"
    labels = None if market or not args.labels else args.labels.split(",")
    if not market and args.valid_from is None:
        if args.valid_until or args.time_column:
            raise GptquantError("--valid-until and --time-column need --valid-from")
        return args.data, args.valid, labels, None
    if args.valid is not None:
        raise GptquantError("--valid and --valid-from exclude each other: the time split makes the validation rows")
    if args.valid_from is None:
        raise GptquantError("--labels market needs --valid-from DATE: market labels are split by time, never at random")
    from .market_split import describe, market_split, time_split

    if market:
        train, valid, info = market_split(args.data, args.valid_from, args.valid_until, time_column=args.time_column)
        print(describe(info))
        return train, valid, ["negative", "neutral", "positive"], info
    train, valid, info = time_split(args.data, args.valid_from, args.valid_until, time_column=args.time_column)
    print(describe(info))
    return train, valid, labels, info


def _train_detector(args) -> int:
    from .detector import train_detector

    report = train_detector(args.model, args.human, args.machine, text_column=args.text_column, limit=args.limit,
                            seed=args.seed, out=args.out, threads=args.threads, features=args.features)
    print("validation AUROC by features: " + ", ".join(f"{k} {v:.4f}" for k, v in report["valid_auroc"].items())
          + f" -> {report['features']}")
    print(f"test AUROC ({report['n_test']} rows never seen in training; {report['excluded_undefined']} rows "
          f"with undefined statistics excluded):")
    for k, v in report["test_auroc"].items():
        print(f"  {k:<14}{v:.4f}")
    print(f"ai_score test ECE {report['test_ece']:.4f}")
    print(f"wrote {report['written']}")
    return 0


def _label_market(args) -> int:
    from ..features import labels as L
    from ..market.prices import load_bars

    bars = load_bars(args.prices, volume_unit=args.volume_unit)
    labelled, rejects = L.market_labels(args.news, bars, args.benchmark, benchmark_code=args.benchmark_code,
                                        horizon=args.horizon, down=args.down, up=args.up, cutoff=args.cutoff)
    out = Path(args.out)
    rej = Path(args.rejects) if args.rejects else out.with_name(out.stem + ".rejects.csv")
    atomic_write(rej, lambda p: rejects.to_csv(p, index=False))
    if labelled.empty:
        raise GptquantError(f"{args.news}: no row could be labelled ({len(rejects)} rejected, see {rej})")
    atomic_write(out, lambda p: labelled.to_parquet(p, index=False) if out.suffix in (".parquet", ".pq")
            else labelled.to_csv(p, index=False))
    counts = labelled["label"].value_counts().reindex(list(L.LABELS), fill_value=0)
    print(f"labelled {len(labelled)} (article, instrument) rows: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; {len(rejects)} rejected -> {rej}")
    return 0


def _eval_sentiment(args) -> int:
    from .metrics import format_table
    from .evaluate import evaluate

    if len(args.paths) < 2:
        raise GptquantError("eval sentiment needs MODEL [MODEL ...] FILE")
    *models, data = args.paths
    results = evaluate(models, data, text_column=args.text_column, label_column=args.label_column,
                       term_column=args.term_column, progress=True)
    labels = list(next(iter(results.values()))["per_class"])
    print(format_table(results, labels))
    for name, r in results.items():
        print(f"confusion [true x predicted] {name}: {r['confusion']}")
    if args.json:
        atomic_write(Path(args.json), lambda p: Path(p).write_text(json.dumps(results, ensure_ascii=False, indent=2),
                                                               encoding="utf-8"))
    return 0
