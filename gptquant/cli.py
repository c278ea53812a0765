"""The one `gptquant` entry point.

Each verb lives in its stage's `cli` module, imported only when that verb runs, so `gptquant score`
never loads torch and `gptquant --help` loads nothing heavy. A verb module defines
`configure(verb, parser)`, which adds arguments and sets `func` (a callable taking the parsed args
and returning an exit code or None).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from .errors import GptquantError

# verb -> (module, one-line help)
VERBS = {
    "demo": ("gptquant.demo", "run the embedded demo: generate data, pretrain a tiny GPT-2, export, score"),
    "generate": ("gptquant.lm.cli", "next-token prediction and a sampled continuation from a checkpoint"),
    "lm": ("gptquant.lm.cli", "language-model training (lm pretrain)"),
    "export": ("gptquant.lm.cli", "export a checkpoint to an ONNX feature bundle (fp32 or int8)"),
    "train": ("gptquant.lm.train_cli", "train heads: train sentiment | train detector"),
    "label": ("gptquant.lm.train_cli", "make training labels: label market"),
    "eval": ("gptquant.lm.train_cli", "evaluate heads: eval sentiment"),
    "score": ("gptquant.features.score_cli", "score a news file with a bundle into article features"),
    "model": ("gptquant.runtime.cli", "bundle tools: model pack | verify | info | upload"),
    "panel": ("gptquant.features.cli", "article features + news -> point-in-time daily panel"),
    "analyze": ("gptquant.analysis.cli", "factor analysis of a panel column against forward returns"),
    "backtest": ("gptquant.backtest.cli", "run a backtest from a TOML config"),
    "nightly": ("gptquant.jobs.cli", "incremental nightly run of a backtests/*.toml config"),
}

# verbs whose --model may be a checkpoint, which the torch-free runtime opens only once it is exported
EXPORTS_CHECKPOINT = {"score"}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser(verb: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptquant", description="Chinese financial news -> GPT-2 features -> A-share signals")
    parser.add_argument("--version", action="version", version=f"gptquant {_version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_) in VERBS.items():
        if not _available(module):
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        if name == verb:
            importlib.import_module(module).configure(name, p)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(verb)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        if verb in EXPORTS_CHECKPOINT and getattr(args, "model", None):
            from .lm.bundle_cache import exported

            exported(args.model)  # a checkpoint: its int8 bundle into the cache, where the runtime finds it
        rc = args.func(args)
        return int(rc or 0)
    except GptquantError as exc:
        print(f"gptquant: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError, KeyError) as exc:
        if os.environ.get("GPTQUANT_DEBUG"):
            raise
        print(f"gptquant: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gptquant: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line, not a traceback; GPTQUANT_DEBUG=1 shows it
        if os.environ.get("GPTQUANT_DEBUG"):
            raise
        print(f"gptquant: error: {type(exc).__name__}: {exc} (set GPTQUANT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
