"""The market as a judge: out-of-time Rank IC of sentiment signals on Astock news 2020 (issue 11, section 3).

  python benchmarks/market_signal.py [--work DIR] [--threads 1] [--out results.json]

Two heads, both `--method hybrid` (the frozen GPT probe + hashed n-gram TF-IDF logistic regression: minutes
on 2 cores; the gradient methods would take hours here), trained through the CLI a user runs:
  text   labels from people: FinFE + CFSC ("term：sentence"), a stratified validation split;
  market labels from the market: `gptquant label market` on Astock news (entry session's open-to-close excess
         return over CSI 300), `train sentiment --labels market --valid-from 2019-07-01 --valid-until 2020-01-01`
         (train 2018-07..2019-06, validation 2019-07..2019-12, thresholds = terciles of the training rows).
Each is exported int8 and `gptquant score`s the Astock news of 2020 (never seen: out of time). The panel
(features.panel.build_panel, 09:30 cutoff, half-life 3) and the factor analysis (analysis.factor.analyze,
open-to-open forward returns, 5 quantiles, sessions with >= 5 names) are the package's. Signals:
each head's sentiment_ewm, the TF-IDF baseline trained on the same rows as each head (P(pos) - P(neg) through
the same panel: what a quant would build), and for reference nll_mean_ewm (the market head's LM statistic) and
news_ewm (1 per article: the decayed news count, which nll_mean_ewm, a decayed sum of a positive number, mostly is).
Labels use astock_prices plus astock_prices_event_windows (every news row gets a label); the Rank IC table is
printed for two universes: the nightly's bars (astock_prices) and those plus the event windows. A second
table correlates each article's own score with its out-of-time excess return (no panel, no carry).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))
DATA, MODEL = SHARED / "data", SHARED / "models" / "gpt2-zh-fin-mini"
HORIZONS = (1, 5, 10)
VALID_FROM, TEST_FROM, TEST_END = "2019-07-01", "2020-01-01", "2020-12-31"
# the nightly's bars (astock_daily: 697 names with >= 2 news items), and those plus the event windows of the
# single-news names (their bars cover 60 sessions before to 30 after their one news item)
UNIVERSES = {"astock_prices (the nightly's)": "astock_prices/astock_daily.csv", "astock_prices + event windows": None}


def signal_table(results: dict) -> pd.DataFrame:
    """One row per (signal, horizon) from analysis.factor.analyze outputs keyed by signal name: Rank IC mean,
    ICIR, t-stat, the sessions behind them, the names behind them (distinct, and mean per session), the
    top-minus-bottom quantile spread of forward returns, and the t-stat over every h-th session only (h-session
    returns of neighbouring sessions overlap, so the plain t-stat overstates h > 1 by up to sqrt(h))."""
    rows = []
    for name, a in results.items():
        cov = a["coverage"]
        for h in a["horizons"]:
            s = a["ic_summary"]["rank_ic"][h]
            ic = pd.Series(a["ic"]["rank_ic"][h], dtype="float64").sort_index().dropna().iloc[:: int(h[:-1])]
            t_sparse = ic.mean() / ic.std() * np.sqrt(len(ic)) if len(ic) > 1 and ic.std() > 0 else np.nan
            rows.append({"signal": name, "horizon": h, "rank_ic": s["mean"], "icir": s["icir"], "t_stat": s["t_stat"],
                         "t_every_h": t_sparse, "sessions": s["n"], "names": cov["instruments"],
                         "names_per_session": cov["rows_used"] / cov["sessions"] if cov["sessions"] else np.nan,
                         "q_spread": a["long_short"]["mean"].get(h)})
    return pd.DataFrame(rows)


def article_table(scores: dict, news: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Per signal, over the out-of-time articles themselves (no panel, no carry): Spearman correlation of the
    article's score with its entry session's excess return (`label market`), its t-stat, and the mean excess
    return of the top minus the bottom tercile of scores. scores: name -> Series indexed by article_id."""
    from scipy.stats import spearmanr

    key = ["datetime", "instrument"]
    arts = news.assign(instrument=news["instruments"].str[0])[["article_id", *key]]
    lab = labels.drop_duplicates(key, keep=False)[[*key, "excess_return"]]
    joined = arts.merge(lab.assign(datetime=pd.to_datetime(lab["datetime"])), on=key, how="inner")
    rows = []
    for name, score in scores.items():
        d = joined.assign(score=joined["article_id"].map(score)).dropna(subset=["score"])
        rho = spearmanr(d["score"], d["excess_return"]).statistic if len(d) > 2 else np.nan
        t = rho * np.sqrt((len(d) - 2) / (1 - rho ** 2)) if abs(rho) < 1 else np.nan
        third = d["score"].rank(pct=True)
        spread = d.loc[third > 2 / 3, "excess_return"].mean() - d.loc[third <= 1 / 3, "excess_return"].mean()
        rows.append({"signal": name, "articles": len(d), "spearman": rho, "t_stat": t, "t3_minus_t1": spread})
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    """The table as Markdown (NaN shown as n/a)."""
    f = lambda v, fmt: "n/a" if v is None or not np.isfinite(v) else format(v, fmt)  # noqa: E731
    lines = ["| signal | horizon | Rank IC | ICIR | t-stat | t every h-th | sessions | names | names/session | Q5-Q1 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.signal} | {r.horizon} | {f(r.rank_ic, '+.4f')} | {f(r.icir, '+.3f')} | {f(r.t_stat, '+.2f')} | {f(r.t_every_h, '+.2f')} | "
                     f"{r.sessions} | {r.names} | {f(r.names_per_session, '.1f')} | {f(r.q_spread, '+.4%')} |")
    return "\n".join(lines)


def cli(*args: str, threads: int) -> None:
    """One `gptquant` verb, as a user runs it, on this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "GPTQUANT_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    print("$ gptquant " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "gptquant.cli", *args], check=True, env=env)
    print(f"  ({time.perf_counter() - t0:.0f}s)", flush=True)


def prepare(work: Path, text_rows: int | None = None) -> dict:
    """Inputs in the work folder (never in the repository): all bars, the text-label table, 2020 news."""
    paths = {k: work / v for k, v in {"bars": "bars.parquet", "text": "text_labels.csv", "news": "news_2020.csv",
                                      "labels": "market_labels.parquet"}.items()}
    bars = pd.concat([pd.read_csv(DATA / "astock_prices" / "astock_daily.csv", dtype={"code": str}),
                      pd.read_csv(DATA / "astock_prices_event_windows" / "astock_daily_event_windows.csv",
                                  dtype={"code": str})], ignore_index=True)
    bars.to_parquet(paths["bars"], index=False)
    finfe = pd.read_csv(DATA / "fincuge_finfe" / "finfe.csv")
    cfsc = pd.read_csv(DATA / "cfsc_absa" / "cfsc_absa.csv")
    sets = [pd.DataFrame({"text": finfe["text"], "label": finfe["label_name"]}),
            pd.DataFrame({"text": cfsc["term"].astype(str) + "：" + cfsc["sentence"], "label": cfsc["label_name"]})]
    if text_rows:  # a quicker head: a seeded sample of half the rows from each set
        sets = [d.sample(min(len(d), text_rows // 2), random_state=0) for d in sets]
    text = pd.concat(sets, ignore_index=True)
    text.to_csv(paths["text"], index=False)
    news = pd.read_csv(DATA / "astock_news" / "astock_news.csv", dtype={"code": str})
    t = pd.to_datetime(news["datetime"])
    news[(t >= TEST_FROM) & (t <= f"{TEST_END} 23:59:59")][["datetime", "code", "text"]].to_csv(paths["news"], index=False)
    return paths


def tfidf_features(head: Path, news: pd.DataFrame) -> pd.DataFrame:
    """The head's own TF-IDF baseline (trained on its rows) as article features: sentiment = P(pos) - P(neg)."""
    from gptquant.lm import metrics as M
    from gptquant.lm.baseline import Baseline
    from gptquant.lm.headfile import BASELINE_JSON

    base = Baseline.load(head / BASELINE_JSON)
    p = np.exp(M.log_softmax(base.logits(news["text"].tolist())))
    return pd.DataFrame({"article_id": news["article_id"].to_numpy(), "sentiment": p[:, -1] - p[:, 0]})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="work folder (default: a new temporary one); finished steps are reused")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--text-rows", type=int, help="train the text head on a sample of this many FinFE + CFSC rows "
                                                   "(default: all 15.8k; 8,000 took ~25 min on the loaded 2-core machine, all rows over 50)")
    ap.add_argument("--out", help="write the table and the full analyses as JSON here")
    args = ap.parse_args()
    if not MODEL.is_dir() or not (DATA / "astock_news").is_dir():
        print(f"needs {MODEL} and {DATA}")
        return 2
    from gptquant.analysis.factor import analyze
    from gptquant.features.panel import build_panel
    from gptquant.market.prices import load_bars
    from gptquant.runtime.news import read_news

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gptquant-market-"))
    work.mkdir(parents=True, exist_ok=True)
    paths, th = prepare(work, args.text_rows), args.threads
    index = DATA / "cn_index_daily" / "csi300_000300_daily.csv"
    cli("label", "market", "--news", str(DATA / "astock_news" / "astock_news.csv"), "--prices", str(paths["bars"]),
        "--volume-unit", "lots", "--benchmark", str(index), "--out", str(paths["labels"]), threads=th)
    heads = {"text": ["--data", str(paths["text"])],
             "market": ["--data", str(paths["labels"]), "--labels", "market", "--valid-from", VALID_FROM,
                        "--valid-until", TEST_FROM]}
    feats = {}
    for name, data in heads.items():
        head, bundle, scored = work / f"{name}_head", work / f"{name}_int8", work / f"{name}_2020.parquet"
        if not (head / "gptquant_sentiment.json").is_file():  # written last: the head is done
            cli("train", "sentiment", "--model", str(MODEL), *data, "--out", str(head), "--method", "hybrid",
                "--threads", str(th), threads=th)
        if not bundle.is_dir():
            cli("export", str(head), "--out", str(bundle), "--int8", threads=th)
        if not scored.is_file():
            cli("score", "--model", str(bundle), "--news", str(paths["news"]), "--out", str(scored),
                "--threads", str(th), threads=th)
        feats[name] = pd.read_parquet(scored)
    news, rejects = read_news(paths["news"])
    assert rejects.empty, rejects
    signals = {f"{n} head sentiment_ewm": (f, "sentiment") for n, f in feats.items()}
    signals.update({f"tfidf ({n} labels) sentiment_ewm": (tfidf_features(work / f"{n}_head", news), "sentiment")
                    for n in heads})
    signals["nll_mean_ewm (reference)"] = (feats["market"], "nll_mean")
    # nll_mean is positive (nats per token), so its decayed sum is largely a decayed news count: this row says how much
    news_flow = pd.DataFrame({"article_id": news["article_id"].to_numpy(), "news": 1.0})
    signals["news_ewm (reference: 1 per article)"] = (news_flow, "news")
    panels = {name: (build_panel(f[["article_id", col]], news, cutoff="09:30", aggregates=("ewm",), halflife=3,
                                 start=TEST_FROM, end=TEST_END), f"{col}_ewm") for name, (f, col) in signals.items()}
    tables, results = {}, {}
    for universe, source in UNIVERSES.items():
        bars = load_bars(paths["bars"] if source is None else DATA / source, volume_unit="lots", start="2019-10-01")
        results[universe] = {name: analyze(panel, col, bars, horizons=HORIZONS, quantiles=5, price="open")
                             for name, (panel, col) in panels.items()}
        tables[universe] = signal_table(results[universe])
    split = json.loads((work / "market_head" / "market_split.json").read_text(encoding="utf-8"))
    print(f"\nmarket head: thresholds from 2018-07..2019-06 only: negative < {split['down']:+.4%}, positive > "
          f"{split['up']:+.4%}; {split['n_train']} training, {split['n_valid']} validation rows")
    for universe, table in tables.items():
        print(f"\nout of time: Astock news {TEST_FROM}..{TEST_END}, {len(news)} articles; Rank IC per session, "
              f"open-to-open forward returns; bars: {universe}\n")
        print(format_table(table))
    labels = pd.read_parquet(paths["labels"])
    labels = labels[pd.to_datetime(labels["session"]) >= TEST_FROM]
    scores = {n.replace("_ewm", ""): f.set_index("article_id")[c] for n, (f, c) in signals.items() if c != "news"}
    arts = article_table(scores, news, labels)
    print(f"\nper article, out of time: score vs the entry session's open-to-close excess return over CSI 300 "
          f"(the market head's own target)\n\n| signal | articles | Spearman | t-stat | top - bottom tercile |\n|---|---|---|---|---|")
    for r in arts.itertuples(index=False):
        print(f"| {r.signal} | {r.articles} | {r.spearman:+.4f} | {r.t_stat:+.2f} | {r.t3_minus_t1:+.4%} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"tables": {u: t.to_dict(orient="records") for u, t in tables.items()}, "split": split,
                                              "articles": arts.to_dict(orient="records"),
                                              "analyses": results}, ensure_ascii=False, default=str), encoding="utf-8")
    print(f"(work files in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
