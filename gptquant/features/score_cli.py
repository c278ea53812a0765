"""`gptquant score`: a news file through the scoring pipeline (gptquant.features.pipeline) into article features.

The file is read in chunks (never whole) and cut into parts; finished parts go into `<out>.parts/` as they
come, so a crash or Ctrl-C loses at most the parts in flight: a re-run with the same news, model and part
size skips the parts already there. `--cache` puts the score cache before the engine. The final file is
assembled in news order and written atomically.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_write
from ..errors import GptquantError
from .pipeline import PART_SIZE, Counts, make_parts, part_name, score_parts


def configure(verb: str, parser) -> None:
    parser.add_argument("--model", required=True, help="bundle directory (or a GPT-2 checkpoint directory to export)")
    parser.add_argument("--news", required=True, help="news file: .csv (UTF-8/GB18030), .jsonl or .parquet")
    parser.add_argument("--out", required=True, help="article features, .parquet (or .csv)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per ONNX batch (default 32)")
    parser.add_argument("--batch-tokens", type=int, default=512,
                        help="padded tokens per ONNX batch (default 512; memory scales with it)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default $GPTQUANT_THREADS or ORT's)")
    parser.add_argument("--text-column", default=None, help="column holding the text (default: text, else title + content)")
    parser.add_argument("--date-order", choices=("dmy", "mdy"), default=None,
                        help="how to read dates like 03/04/2024 (default: such dates are rejected as ambiguous)")
    parser.add_argument("--part-size", type=int, default=PART_SIZE, help=f"articles per resumable part (default {PART_SIZE})")
    parser.add_argument("--chunk-parts", type=int, default=64,
                        help="CSV/Parquet are read in chunks of this many parts, never whole (default 64)")
    parser.add_argument("--cache", default=None,
                        help="score cache (SQLite): texts it knows are not scored again (default: none)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process / a process pool (default); ray: Ray actors (pip install 'gptquant[ray]')")
    parser.add_argument("--workers", type=int, default=1, help="workers, one ORT session each (default 1)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: a running or new local Ray)")
    parser.set_defaults(func=run_score)


def run_score(args) -> int:
    """Stream the news file chunk by chunk into resumable parts; only ids, features and rejects are kept
    whole, so memory does not grow with the text of the file."""
    import pandas as pd
    from tqdm import tqdm

    from ..runtime.engines import open_engine, restore_order, worker_threads
    from ..runtime.news import REJECT_COLUMNS, iter_news
    from ..runtime.scorer import load_model

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise GptquantError(f"{out}: output must end in .parquet or .csv")
    if args.part_size < 1 or args.chunk_parts < 1:
        raise GptquantError(f"--part-size and --chunk-parts must be positive, got {args.part_size}, {args.chunk_parts}")
    if not out.parent.is_dir():
        raise GptquantError(f"{out.parent}: output directory not found")
    if args.workers < 1:
        raise GptquantError(f"--workers must be positive, got {args.workers}")
    news = Path(args.news)
    if not news.is_file():
        raise GptquantError(f"{news}: news file not found")
    local_threads = worker_threads(args.threads, args.workers) if args.engine == "local" else args.threads
    scorer = load_model(args.model, threads=local_threads, batch_size=args.batch_size, batch_tokens=args.batch_tokens)
    parts_dir = Path(f"{out}.parts")
    _prepare_parts(parts_dir, _fingerprint(scorer.bundle_hash, args, news))

    ids: list = []        # article ids in news order (what restore_order checks against)
    starts: list = []     # part start positions among the usable articles
    rejects: list = []

    def parts():
        chunks = iter_news(news, chunk_rows=args.part_size * args.chunk_parts, text_column=args.text_column,
                           require_meta=False, date_order=args.date_order)
        for articles, rej in chunks:
            rejects.append(rej)
            for start, part in make_parts(articles, args.part_size, first=len(ids)):
                starts.append(start)
                yield start, part
            ids.extend(articles["article_id"].tolist())

    counts, tokens = Counts(), 0
    t0 = time.perf_counter()
    with tqdm(unit="art", desc="scoring", disable=None, file=sys.stderr) as bar, \
            _maybe_cache(args.cache) as cache, \
            open_engine(args.engine, bundle_dir=scorer.bundle_dir, bundle_hash=scorer.bundle_hash, workers=args.workers,
                        threads=args.threads, batch_size=args.batch_size, address=args.address, scorer=scorer,
                        batch_tokens=args.batch_tokens) as run:
        shown = 0  # resumed articles shown on the bar
        for _, feats in score_parts(parts(), run, cache=cache, bundle_hash=scorer.bundle_hash, parts_dir=parts_dir,
                                    counts=counts):  # parts arrive as they finish; each is written atomically
            tokens += int(feats["n_tokens"].sum())
            bar.update(len(feats) + counts.resumed - shown)
            shown = counts.resumed
        bar.update(counts.resumed - shown)
    seconds = time.perf_counter() - t0

    rejects = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)
    rejects_path = Path(f"{out}.rejects.csv")
    if len(rejects):
        atomic_write(rejects_path, lambda tmp: rejects.to_csv(tmp, index=False, encoding="utf-8"))
    elif rejects_path.exists():
        rejects_path.unlink()  # a stale file from an earlier run would misreport this one
    n = len(ids)
    if not n:
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise GptquantError(f"{args.news}: no usable articles ({len(rejects)} rejected, see {rejects_path})")
    frames = [pd.read_parquet(parts_dir / part_name(s)) for s in starts]
    if sum(map(len, frames)) != n:
        raise GptquantError(f"{parts_dir}: parts hold {sum(map(len, frames))} rows, expected {n}; delete the folder and re-run")
    result = restore_order(pd.Series(ids), frames)  # rows in news order, checked by article id
    if out.suffix.lower() == ".csv":
        atomic_write(out, lambda tmp: result.to_csv(tmp, index=False, encoding="utf-8"))
    else:
        atomic_write(out, lambda tmp: result.to_parquet(tmp, index=False))
    shutil.rmtree(parts_dir, ignore_errors=True)

    resumed_txt = f", {counts.resumed} resumed from parts" if counts.resumed else ""
    cached_txt = f", {counts.cached} from the cache or repeated" if counts.cached else ""
    engine = f" on {args.engine} x{args.workers}" if (args.engine, args.workers) != ("local", 1) else ""
    rate = f"{tokens / seconds:,.0f} tokens/s{engine}" if counts.scored else "nothing new to score"
    rej = f"; {len(rejects)} rows rejected -> {rejects_path}" if len(rejects) else ""
    print(f"scored {n} articles ({int(result['n_tokens'].sum())} tokens){resumed_txt}{cached_txt}: {rate}; wrote {out}{rej}")
    return 0


def _fingerprint(bundle_hash: str, args, news: Path) -> str:
    """Parts are reusable only for the same model, news file bytes, part and chunk sizes and text column."""
    from ..bundle import sha256_file

    return hashlib.sha256(f"{bundle_hash}|{sha256_file(news)}|{args.part_size}|{args.chunk_parts}|{args.text_column}|{args.date_order}".encode()).hexdigest()


def _prepare_parts(parts_dir: Path, key: str) -> None:
    meta = parts_dir / "parts.json"
    if parts_dir.is_dir():
        try:
            same = json.loads(meta.read_text())["key"] == key
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if same:
            return
        for p in parts_dir.glob("part-*.parquet"):  # from another news file or model: not reusable
            p.unlink()
    parts_dir.mkdir(exist_ok=True)
    atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps({"key": key})))


@contextmanager
def _maybe_cache(path):
    """The score cache at `path`, or None (no cache)."""
    if path is None:
        yield None
        return
    from .cache import ScoreCache

    with ScoreCache(path) as cache:
        yield cache
