"""CLI verbs backed by torch: `generate`, `lm pretrain`, `export`. Heavy imports happen inside the handlers."""
from __future__ import annotations

import json


def configure(verb: str, parser) -> None:
    if verb == "generate":
        parser.add_argument("model", help="Hugging Face GPT-2 checkpoint directory (e.g. ./model)")
        parser.add_argument("text", help="prompt text")
        parser.add_argument("--top", type=int, default=5, help="how many next-token candidates to show")
        parser.add_argument("--max-new-tokens", type=int, default=40)
        parser.add_argument("--top-k", type=int, default=50)
        parser.add_argument("--top-p", type=float, default=0.95)
        parser.add_argument("--temperature", type=float, default=1.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.set_defaults(func=_generate)
    elif verb == "lm":
        sub = parser.add_subparsers(dest="lm_verb", metavar="ACTION", required=True)
        p = sub.add_parser("pretrain", help="causal-LM (continued) pretraining on a corpus",
                           description="Causal-LM pretraining: from an existing checkpoint (--model) or a fresh "
                                       "config (--config, with a WordPiece vocabulary trained on the corpus).")
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--model", help="checkpoint directory to continue from")
        src.add_argument("--config", choices=["tiny", "small", "base"], help="start from scratch with this shape")
        p.add_argument("--corpus", required=True, help=".txt (one document per line), .csv/.jsonl/.parquet with 'text'")
        p.add_argument("--out", required=True, help="output checkpoint directory (HF layout; resumable)")
        p.add_argument("--steps", type=int, help="optimizer steps (default: --epochs over the corpus)")
        p.add_argument("--epochs", type=float, default=1.0)
        p.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this many minutes")
        p.add_argument("--block", type=int, default=128)
        p.add_argument("--batch", type=int, default=16)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--save-every", type=int, default=100)
        p.add_argument("--vocab-size", type=int, default=8000, help="WordPiece size for --config")
        p.add_argument("--threads", type=int)
        p.add_argument("--no-resume", action="store_true", help="start over even if --out has a checkpoint")
        p.set_defaults(func=_pretrain)
    elif verb == "export":
        parser.add_argument("model", help="Hugging Face GPT-2 checkpoint directory")
        parser.add_argument("--out", required=True, help="bundle directory to write (replaced atomically)")
        parser.add_argument("--int8", action="store_true", help="dynamic int8 quantisation, gated by a parity check")
        parser.add_argument("--max-length", type=int, default=256, help="tokens per article incl. BOS (longer ones are truncated and flagged)")
        parser.add_argument("--name", help="bundle name (default: the --out folder name)")
        parser.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
        parser.add_argument("--optimize", choices=["auto", "on", "off"], default="off",
                            help="onnxruntime's transformer optimizer: off (default; it measured 0.91-1.00x on "
                                 "gpt2-zh-fin-mini), auto (kept when exact and >= 5%% faster here), on")
        parser.add_argument("--sentiment-only", action="store_true",
                            help="graph with the sentiment head only (sent_* columns, no LM statistics): for a "
                                 "trained sentiment checkpoint, skips the per-token LM head")
        parser.set_defaults(func=_export)


def _generate(args) -> int:
    from .checkpoint import load_checkpoint
    from .generate import next_token, sample

    ckpt = load_checkpoint(args.model)
    print("next token after the text (not after [SEP]):")
    for tok, p in next_token(ckpt, args.text, args.top):
        print(f"  {tok}\t{p:.4f}")
    cont = sample(ckpt, args.text, args.max_new_tokens, args.top_k, args.top_p, args.temperature, args.seed)
    print(f"continuation (seed {args.seed}): {args.text}{cont}")
    return 0


def _pretrain(args) -> int:
    from .pretrain import pretrain

    summary = pretrain(args.out, args.corpus, model=args.model, config=args.config or "small", steps=args.steps,
                       minutes=args.minutes, epochs=args.epochs, block=args.block, batch=args.batch, lr=args.lr,
                       seed=args.seed, save_every=args.save_every, vocab_size=args.vocab_size,
                       resume=not args.no_resume, threads=args.threads)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _export(args) -> int:
    from ..names import safe_name
    from .export import export_bundle

    name = None if args.name is None else safe_name(args.name, "--name")  # before any loading
    m = export_bundle(args.model, args.out, int8=args.int8, max_length=args.max_length, name=name,
                      exporter=args.exporter, optimize=args.optimize, sentiment_only=args.sentiment_only)
    par = m["parity"].get(m["precision"], {})
    shown = {"nll_mean_abs": "mean |dnll|", "nll_max_abs": "max |dnll|", "rank_bucket_agreement": "rank buckets",
             "sent_prob_max_abs": "max |dp sentiment|", "sent_label_agreement": "sentiment labels",
             "ai_prob_max_abs": "max |dp ai_score|", "ai_label_agreement": "ai_score labels"}
    print(f"wrote {args.out}: {m['precision']}, {m['graph']} graph, max_length {m['max_length']}, parity vs torch fp32: "
          + ", ".join(f"{name} {par[k]:.4f}" for k, name in shown.items() if k in par))
    return 0
