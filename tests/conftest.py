"""Shared fixtures and helpers (test files import them from here, never from each other): where ../shared
lives (skips with a reason when it is absent), tiny models and bundles, a planted-signal panel, a sweep project."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gptquant import bundle as B
from gptquant.market.calendar import sessions

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GPTQUANT_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
FIXTURE_MODEL = SHARED / "models" / "gpt2-zh-fin-mini"
# prebuilt test bundles for the torch-free run (tests/build_runtime_fixtures.py); GPTQUANT_NO_SKIP=1 makes a skip fail
FIXTURES_ENV = "GPTQUANT_TEST_FIXTURES"
NO_SKIP_ENV = "GPTQUANT_NO_SKIP"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data/models folder beside the repo; set GPTQUANT_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return need(DATA)


@pytest.fixture(scope="session")
def fixture_model() -> Path:
    return need(FIXTURE_MODEL)


# ---- tiny models built by the project's own code (no shared data needed) ------------------------

def demo_texts(n: int, seed: int = 0) -> list[str]:
    """Synthetic Chinese financial flashes from the demo-world generator."""
    import numpy as np

    from gptquant.demo_world import write_article

    rng = np.random.default_rng(seed)
    return [write_article(f"测试{'甲乙丙丁'[i % 4]}科技", int(rng.integers(3)), rng) for i in range(n)]


def build_tiny_checkpoint(root: Path) -> Path:
    """A tiny GPT-2 (2 layers x 64) in the uer layout, pretrained a few steps by `pretrain`."""
    from gptquant.lm.pretrain import pretrain

    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(demo_texts(300)), encoding="utf-8")
    out = root / "model"
    pretrain(out, corpus, config="tiny", steps=8, block=32, batch=8, vocab_size=800, progress=False)
    return out


def build_tiny_bundle(checkpoint: Path, out: Path) -> Path:
    """An fp32 bundle exported from the tiny checkpoint (max_length 48)."""
    from gptquant.lm.export import export_bundle

    export_bundle(checkpoint, out, int8=False, max_length=48, exporter="torchscript")
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_bundle(request, tmp_path_factory) -> Path:
    """The tiny fp32 bundle: exported here, or prebuilt under $GPTQUANT_TEST_FIXTURES where torch is absent."""
    import importlib.util

    prebuilt = Path(os.environ.get(FIXTURES_ENV, "/nonexistent")) / "tiny-fp32"
    if importlib.util.find_spec("torch") is None and prebuilt.is_dir():
        return prebuilt
    checkpoint = request.getfixturevalue("tiny_checkpoint")
    return build_tiny_bundle(checkpoint, tmp_path_factory.mktemp("bundles") / "tiny-fp32")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on 2 CPUs for one test module (Ray start-up is slow: once per module)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gptquant[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# ---- a tiny synthetic bundle built with onnx.helper (no torch), for runtime tests --------------------
# The graph is a causal toy LM: h_t = mean of the embeddings of tokens 0..t (CumSum, so right padding
# cannot reach a real position), next-token logits = h_t @ W. It emits every output of the bundle
# contract, so the runtime's reductions run on real, deterministic numbers. Text is synthetic words.

WORDS = [f"w{i}" for i in range(40)]
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
LABELS3 = ["negative", "neutral", "positive"]


def make_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))
    return len(vocab)


def make_graph(path, vocab: int, hidden: int = 8, n_labels: int = 3, seed: int = 0):
    """Write the toy graph to `path` and return its output names (a prebuilt copy where onnx is absent)."""
    import importlib.util
    import shutil

    name = f"graph-v{vocab}-h{hidden}-l{n_labels}-s{seed}"
    if importlib.util.find_spec("onnx") is None:
        prebuilt = Path(os.environ.get(FIXTURES_ENV, "/nonexistent")) / name
        if not (prebuilt / "model.onnx").is_file():
            pytest.skip(f"needs onnx, or {name} prebuilt under ${FIXTURES_ENV} (tests/build_runtime_fixtures.py)")
        shutil.copyfile(prebuilt / "model.onnx", path)
        return json.loads((prebuilt / "outputs.json").read_text())
    return _build_graph(path, vocab, hidden, n_labels, seed)


def _build_graph(path, vocab: int, hidden: int, n_labels: int, seed: int):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.normal(size=(vocab, hidden)) * 1.5).astype(np.float32), "E"),
        numpy_helper.from_array((rng.normal(size=(hidden, vocab)) * 1.5).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(hidden, max(n_labels, 1))).astype(np.float32), "Ws"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
        numpy_helper.from_array(np.array([2**62], np.int64), "big"),
        numpy_helper.from_array(np.array([2], np.int64), "ax2"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array(1, np.int64), "ax1s"),
    ]
    N = helper.make_node
    nodes = [
        N("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        N("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        N("Gather", ["E", "input_ids"], ["emb"]),
        N("Mul", ["emb", "mask3"], ["emb_m"]),
        N("CumSum", ["emb_m", "ax1s"], ["csum"]),
        N("CumSum", ["maskf", "ax1s"], ["count"]),
        N("Max", ["count", "onef"], ["count1"]),
        N("Unsqueeze", ["count1", "ax2"], ["count3"]),
        N("Div", ["csum", "count3"], ["h"]),
        N("MatMul", ["h", "W"], ["logits"]),
        N("LogSoftmax", ["logits"], ["logp_all"], axis=-1),
        N("Slice", ["logp_all", "zero", "minus1", "ax1"], ["logp"]),
        N("Slice", ["input_ids", "one", "big", "ax1"], ["next_ids"]),
        N("Unsqueeze", ["next_ids", "ax2"], ["next3"]),
        N("GatherElements", ["logp", "next3"], ["lp3"], axis=2),
        N("Squeeze", ["lp3", "ax2"], ["token_logprob"]),
        N("Exp", ["logp"], ["p"]),
        N("Mul", ["p", "logp"], ["plogp"]),
        N("ReduceSum", ["plogp", "ax2"], ["e_logp"], keepdims=0),
        N("Neg", ["e_logp"], ["token_entropy"]),
        N("Mul", ["plogp", "logp"], ["plogp2"]),
        N("ReduceSum", ["plogp2", "ax2"], ["e_logp2"], keepdims=0),
        N("Mul", ["e_logp", "e_logp"], ["e_logp_sq"]),
        N("Sub", ["e_logp2", "e_logp_sq"], ["token_logprob_var"]),
        N("Greater", ["logp", "lp3"], ["gt"]),
        N("Cast", ["gt"], ["gti"], to=TensorProto.INT64),
        N("ReduceSum", ["gti", "ax2"], ["n_above"], keepdims=0),
        N("Add", ["n_above", "one"], ["token_rank"]),
        N("Mul", ["h", "mask3"], ["h_m"]),
        N("ReduceSum", ["h_m", "ax1"], ["h_sum"], keepdims=0),
        N("ReduceSum", ["maskf", "ax1"], ["len"], keepdims=1),
        N("Div", ["h_sum", "len"], ["pooled"]),
        N("Equal", ["count", "len"], ["at_last"]),
        N("Cast", ["at_last"], ["at_lastf"], to=TensorProto.FLOAT),
        N("Mul", ["at_lastf", "maskf"], ["onehot"]),
        N("Unsqueeze", ["onehot", "ax2"], ["onehot3"]),
        N("Mul", ["h", "onehot3"], ["h_last"]),
        N("ReduceSum", ["h_last", "ax1"], ["last_hidden"], keepdims=0),
    ]
    inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "onef"))
    outputs = [
        helper.make_tensor_value_info("token_logprob", TensorProto.FLOAT, ["batch", "seq_1"]),
        helper.make_tensor_value_info("token_entropy", TensorProto.FLOAT, ["batch", "seq_1"]),
        helper.make_tensor_value_info("token_logprob_var", TensorProto.FLOAT, ["batch", "seq_1"]),
        helper.make_tensor_value_info("token_rank", TensorProto.INT64, ["batch", "seq_1"]),
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden]),
        helper.make_tensor_value_info("last_hidden", TensorProto.FLOAT, ["batch", hidden]),
    ]
    if n_labels:
        nodes += [N("MatMul", ["pooled", "Ws"], ["sent_logits"]), N("LogSoftmax", ["sent_logits"], ["sent_logprob"], axis=-1)]
        outputs.append(helper.make_tensor_value_info("sent_logprob", TensorProto.FLOAT, ["batch", n_labels]))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in B.INPUTS]
    graph = helper.make_graph(nodes, "toy_lm", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return [o.name for o in outputs]


def make_bundle(path, *, max_length: int = 16, labels=LABELS3, add_bos: bool = True, add_eos: bool = True, seed: int = 0):
    """Write a complete, verifiable synthetic bundle into `path` and return its manifest."""
    path.mkdir(parents=True, exist_ok=True)
    vocab = make_tokenizer(path / B.TOKENIZER_FILE)
    outputs = make_graph(path / B.MODEL_FILE, vocab, n_labels=len(labels) if labels else 0, seed=seed)
    manifest = {
        "name": "toy-lm", "precision": "fp32", "max_length": max_length, "opset": 17,
        "tokenizer": {"kind": "wordlevel", "bos_id": 2, "eos_id": 3, "pad_id": 0,
                      "add_bos": add_bos, "add_eos": add_eos, "vocab_size": vocab},
        "outputs": outputs,
        "parity": {"max_abs_logprob_diff": 0.0},
    }
    if labels:
        manifest["labels"] = list(labels)
    return B.write_manifest(path, manifest)


def words(rng, n: int) -> str:
    return " ".join(rng.choice(WORDS, size=n))


@pytest.fixture(scope="module")
def synth_bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "toy"
    make_bundle(path)
    return path


# ---- factor analysis: a panel with a planted signal ---------------------------------------------------

def planted(n_days=70, n_inst=24, strength=0.004, seed=3, missing=0.1):
    """Opens whose next-session return is strength * signal + noise; the panel holds the signal (with gaps)."""
    rng = np.random.default_rng(seed)
    days = sessions("2024-01-01", "2024-12-31")[:n_days]
    insts = [f"{600000 + i:06d}.SH" for i in range(n_inst)]
    sig = rng.normal(size=(n_days, n_inst))
    ret = strength * sig + rng.normal(0, 0.01, (n_days, n_inst))
    opens = 10 * np.exp(np.vstack([np.zeros(n_inst), np.cumsum(ret, axis=0)]))[:-1]
    bars = pd.DataFrame({"datetime": np.repeat(days, n_inst), "instrument": np.tile(insts, n_days),
                         "open": opens.ravel(), "close": opens.ravel() * 1.001})
    index = pd.MultiIndex.from_arrays([np.repeat(days, n_inst), np.tile(insts, n_days)], names=["datetime", "instrument"])
    panel = pd.DataFrame({"s": sig.ravel()}, index=index)
    panel = panel[rng.random(len(panel)) > missing]  # not every instrument has news every day
    return panel, bars


# ---- a parameter sweep project (bars, panel, benchmark, strategy, config with a [sweep] grid) -----------

SWEEP_STRATEGY = '''
def initialize(context):
    context.k = int(context.options["top_k"])
    context.every = int(context.options["rebalance_every"])
    if context.k < 1:
        raise ValueError("top_k must be >= 1")

def before_trading_start(context, data):
    if context.trading_day_index % context.every == 0:
        scores = data.current(context.instruments, "score").dropna().sort_values(ascending=False)
        top = list(scores.index[: context.k])
        for sym in context.portfolio.positions:
            if sym not in top:
                context.order_target_percent(sym, 0)
        for sym in top:
            context.order_target_percent(sym, 0.9 / context.k)
'''

SWEEP_CONFIG = '''
title = "sweep test"
[data]
bars = "bars.csv"
benchmark_data = "csi300.csv"
[panel]
path = "panel.parquet"
[backtest]
start = "2021-03-02"
end = "2021-04-15"
[strategy]
module = "strat.py"
[strategy.params]
top_k = 1
rebalance_every = 5
[sweep]
top_k = [0, 1, 2, 3]
rebalance_every = [2, 5]
'''


@pytest.fixture(scope="module")
def sweep_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    days = sessions("2021-03-01", "2021-04-15")
    rng = np.random.default_rng(11)
    bars, panel = [], []
    for code in ("600000", "000001", "300750", "601318"):
        close = 10 * np.exp(np.cumsum(rng.normal(0, 0.015, len(days))))
        bars.append(pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "code": code, "open": close, "high": close,
                                  "low": close, "close": close, "volume": 1e8}))
        panel.append(pd.DataFrame({"datetime": days, "instrument": code + (".SH" if code[0] == "6" else ".SZ"),
                                   "score": rng.normal(size=len(days))}))
    pd.concat(bars).to_csv(root / "bars.csv", index=False)
    pd.concat(panel).set_index(["datetime", "instrument"]).to_parquet(root / "panel.parquet")
    pd.DataFrame({"date": sessions("2021-02-01", "2021-04-15"), "code": "000300", "close": 5000.0}).to_csv(
        root / "csi300.csv", index=False)
    (root / "strat.py").write_text(SWEEP_STRATEGY)
    (root / "sweep.toml").write_text(SWEEP_CONFIG)
    return root


def check_sweep_results(table: pd.DataFrame, out):
    assert len(table) == 8 and table["task"].tolist() == list(range(8))
    assert table[["param_top_k", "param_rebalance_every"]].values.tolist() == [
        [k, r] for k in (0, 1, 2, 3) for r in (2, 5)]
    failed = table[table["status"] == "failed"]
    assert failed["param_top_k"].tolist() == [0, 0]
    assert failed["error"].str.contains("ValueError: top_k must be >= 1").all()
    assert failed["sharpe"].isna().all()
    ok = table[table["status"] == "ok"]
    assert ok["total_return"].notna().all() and ok["total_return"].nunique() > 1  # the parameters mattered
    assert sorted(p.name for p in out.glob("task-*.json")) == [f"task-{i:04d}.json" for i in range(8)]
    row = json.loads((out / "task-0003.json").read_text())
    assert row["params"] == {"top_k": 1, "rebalance_every": 5} and row["summary"]["total_return"] == pytest.approx(
        table.loc[3, "total_return"])
    pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep_results.parquet"), table, check_dtype=False)


def labelled(n=150, seed=0, names=None) -> pd.DataFrame:
    """Synthetic news with a known label (demo-world templates; no shared data)."""
    from gptquant.demo_world import LABELS, write_article

    names = names or LABELS
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return pd.DataFrame({"text": [write_article(f"样本{'甲乙丙丁戊'[i % 5]}公司", int(k), rng) for i, k in enumerate(y)],
                         "label": [names[k] for k in y]})


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    """labelled() as a CSV table for `train sentiment`."""
    path = tmp_path_factory.mktemp("sent") / "train.csv"
    labelled().to_csv(path, index=False)
    return path


# ---- a nightly on a tiny generated world ------------------------------------------------------------

FAILING = '''
def initialize(context):
    raise RuntimeError("this strategy always fails")
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The demo world's generator at a tiny size (12 names x 60 sessions), with a planted signal."""
    from gptquant.demo_world import make_world

    root = tmp_path_factory.mktemp("world")
    make_world(root / "world", n_instruments=12, n_sessions=60, corpus_docs=10, signal=0.02, seed=3)
    return root


def write_config(folder: Path, world: Path, news: str = "world/news.csv", failing: bool = False, extra: str = "",
                 top: str = "") -> Path:
    """A nightly config on the tiny world: one top-K backtest (+ a failing one), `top` keys before the tables,
    `extra` tables after them."""
    folder.mkdir(parents=True, exist_ok=True)
    topk = (REPO / "strategies" / "sentiment_topk.py").as_posix()
    text = f'''
title = "tiny world <nightly>"
root = "{world.as_posix()}"
{top}
[news]
sources = ["{news}"]
[prices]
bars = "world/prices.csv"
benchmark_data = "world/benchmark.csv"
[model]
bundle = "no-bundle-needed"
cache = "scores.sqlite"
[analysis]
horizons = [1, 5]
[[backtest]]
name = "topk"
module = "{topk}"
params = {{ top_k = 3, rebalance_every = 1 }}
[compare]
sharpe = 0.0
rank_ic = 1.0
[output]
dir = "runs"
{extra}'''
    if failing:
        (folder / "failing.py").write_text(FAILING, encoding="utf-8")
        text += '\n[[backtest]]\nname = "broken"\nmodule = "failing.py"\n'
    path = folder / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ---- a run that allows no skips (the torch-free CI run must exercise every test it selects) -------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(NO_SKIP_ENV) and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome, report.longrepr = "failed", f"skipped where {NO_SKIP_ENV} is set: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get(NO_SKIP_ENV) and report.skipped:
        report.outcome, report.longrepr = "failed", f"skipped where {NO_SKIP_ENV} is set: {report.longrepr}"
