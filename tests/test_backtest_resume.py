"""Resumed backtests equal full runs: the nightly saves a run's state and the next night continues from the last
session whose inputs did not change (gptquant.backtest.resume)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

bt = pytest.importorskip("backtrader")

from pathlib import Path  # noqa: E402

from gptquant.backtest import trade  # noqa: E402
from gptquant.backtest.job import _load_module  # noqa: E402
from gptquant.backtest.engine import run  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
news_event = _load_module("strategies/news_event.py", REPO)
sentiment_topk = _load_module("strategies/sentiment_topk.py", REPO)

CODES = ["600000.SH", "600036.SH", "601318.SH", "000001.SZ", "000002.SZ", "000858.SZ", "002415.SZ", "300750.SZ"]
DAYS = sessions("2021-01-04", "2021-04-30")  # 76 sessions
START = DAYS[3]


def market(seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for k, code in enumerate(CODES):
        close = np.round((10 + 5 * k) * np.exp(np.cumsum(rng.normal(0, 0.02, len(DAYS)))), 2)
        opn = np.round(np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 0.005, len(DAYS))), 2)
        rows.append(pd.DataFrame({"datetime": DAYS, "instrument": code, "open": opn, "high": np.maximum(opn, close) * 1.01,
                                  "low": np.minimum(opn, close) * 0.99, "close": close,
                                  "volume": rng.integers(2, 9, len(DAYS)) * 1e6}))
    bars = pd.concat(rows, ignore_index=True)
    panel = pd.DataFrame({"datetime": np.repeat(DAYS, len(CODES)), "instrument": np.tile(CODES, len(DAYS)),
                          "score": rng.normal(0, 1, len(DAYS) * len(CODES))})
    panel = panel[rng.random(len(panel)) < 0.6].set_index(["datetime", "instrument"]).sort_index()
    return bars, panel


def upto(bars, panel, end):
    return bars[bars["datetime"] <= end], panel[panel.index.get_level_values("datetime") <= end]


class HoldWithIndicator(bt.Strategy):
    """Native strategy with an indicator and its own state (feeds as dict keys, session counters)."""

    params = (("weight", 0.2),)

    def __init__(self):
        self.fast = {d: bt.ind.SMA(d.close, period=3) for d in self.datas}
        self.entered, self.log = {}, []

    def notify_order(self, order):
        if order.status == order.Completed and order.isbuy():
            self.entered[order.data] = len(self)

    def next(self):
        for d in self.datas:
            if self.getposition(d).size and len(self) - self.entered.get(d, len(self)) >= 4:
                self.close(data=d)
            elif (not self.getposition(d).size and d.score[0] > 1.0 and d.close[0] > self.fast[d][0]
                  and len(self) > 3 and self.datetime.date(-3).day % 5):  # reads the strategy's own clock history
                self.buy(data=d, size=int(self.broker.getvalue() * self.p.weight / d.close[0] / 100) * 100)
        self.log.append(len(self.entered))


def run_topk(bars, panel, end, checkpoints=None):
    return trade(None, START, end, sentiment_topk.initialize, sentiment_topk.handle_data,
                 sentiment_topk.before_trading_start, data=bars, panel=panel, benchmark=None,
                 options={"column": "score", "top_k": 3, "rebalance_every": 2}, checkpoints=checkpoints)


def run_native(strategy, bars, panel, end, checkpoints=None, **params):
    return run(strategy, data=bars, panel=panel, start=START, end=end, benchmark=None, checkpoints=checkpoints,
               **params)


def resumed_through(result) -> tuple[int, int]:
    assert "resumed" in result.resume_note, result.resume_note
    done, total = result.resume_note.split("through session ")[1].split(":")[0].split(" of ")
    return int(done), int(total)


def same(a, b):
    pd.testing.assert_frame_equal(a.daily, b.daily)
    pd.testing.assert_frame_equal(a.orders, b.orders)
    pd.testing.assert_frame_equal(a.trades, b.trades)
    assert len(a.orders) > 10 and (a.orders["status"] == "filled").sum() > 5  # the runs really traded


RUNNERS = {
    "bigquant topk": lambda bars, panel, end, cp=None: run_topk(bars, panel, end, cp),
    "native news_event": lambda bars, panel, end, cp=None: run_native(news_event.NewsEvent, bars, panel, end, cp,
                                                                      column="score", enter_above=1.0, exit_below=-1.0),
    "native with indicator": lambda bars, panel, end, cp=None: run_native(HoldWithIndicator, bars, panel, end, cp),
}


@pytest.mark.parametrize("name", list(RUNNERS))
def test_next_night_resumes_and_equals_a_full_run(name, tmp_path):
    runner = RUNNERS[name]
    bars, panel = market()
    cp = tmp_path / "cp.pkl"
    first = runner(*upto(bars, panel, DAYS[-6]), DAYS[-6], cp)  # last night: the data ended five sessions earlier
    assert "full run" in first.resume_note
    full = runner(bars, panel, DAYS[-1])
    resumed = runner(bars, panel, DAYS[-1], cp)
    assert "resumed" in resumed.resume_note, resumed.resume_note
    same(resumed, full)
    again = runner(bars, panel, DAYS[-1], cp)  # nothing new: restored at the last session
    done, total = resumed_through(again)
    assert done == total  # restored at the very last session, nothing re-run
    same(again, full)


@pytest.mark.parametrize("name", ["bigquant topk", "native with indicator"])
def test_a_change_in_the_past_resumes_from_an_earlier_checkpoint(name, tmp_path, monkeypatch):
    from gptquant.backtest import resume

    monkeypatch.setattr(resume, "EVERY", 20)  # checkpoints every 20 sessions of this short run
    runner = RUNNERS[name]
    bars, panel = market()
    cp = tmp_path / "cp.pkl"
    runner(bars, panel, DAYS[-1], cp)
    revised = panel.copy()
    revised.loc[revised.index.get_level_values("datetime") == DAYS[45], "score"] += 3.0  # a re-scored article
    resumed = runner(bars, revised, DAYS[-1], cp)
    assert "resumed there" in resumed.resume_note
    done, _ = resumed_through(resumed)
    grid_index_of_change = list(sessions(bars["datetime"].min(), DAYS[-1])).index(DAYS[45])
    assert done <= grid_index_of_change  # never resumed past the change
    same(resumed, runner(bars, revised, DAYS[-1]))


def test_a_name_in_the_news_for_the_first_time_tonight_resumes(tmp_path):
    bars, panel = market()
    quiet = CODES[-1]
    old = panel[panel.index.get_level_values("instrument") != quiet]  # no news about it until tonight
    tonight = pd.DataFrame({"datetime": [DAYS[-2], DAYS[-1]], "instrument": quiet, "score": [3.0, 3.0]})
    new = pd.concat([old, tonight.set_index(["datetime", "instrument"])]).sort_index()
    cp = tmp_path / "cp.pkl"
    run_topk(*upto(bars, old, DAYS[-3]), DAYS[-3], cp)
    resumed = run_topk(bars, new, DAYS[-1], cp)
    assert "resumed" in resumed.resume_note
    full = run_topk(bars, new, DAYS[-1])
    same(resumed, full)
    assert (full.orders["instrument"] == quiet).any()  # the news made it a top pick


def test_changed_parameters_run_in_full(tmp_path):
    bars, panel = market()
    cp = tmp_path / "cp.pkl"
    run_native(news_event.NewsEvent, bars, panel, DAYS[-1], cp, column="score", enter_above=1.0)
    other = run_native(news_event.NewsEvent, bars, panel, DAYS[-1], cp, column="score", enter_above=1.5)
    assert "changed" in other.resume_note
    same(other, run_native(news_event.NewsEvent, bars, panel, DAYS[-1], column="score", enter_above=1.5))


class KeepsAFile(bt.Strategy):
    def start(self):
        self.fh = open(__file__)  # state that cannot be saved

    def next(self):
        for d in self.datas[:2]:
            if not self.getposition(d).size and d.score[0] > 0.5:
                self.buy(data=d, size=100)
            elif self.getposition(d).size and d.score[0] < -0.5:
                self.close(data=d)

    def stop(self):
        self.fh.close()


def test_state_that_cannot_be_saved_means_full_runs_not_wrong_ones(tmp_path):
    bars, panel = market()
    cp = tmp_path / "cp.pkl"
    first = run_native(KeepsAFile, bars, panel, DAYS[-1], cp)
    assert "cannot be saved" in first.resume_note
    second = run_native(KeepsAFile, bars, panel, DAYS[-1], cp)
    assert "resumed" not in second.resume_note
    same(second, run_native(KeepsAFile, bars, panel, DAYS[-1]))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_tampered_or_foreign_checkpoint_is_not_loaded(tmp_path, monkeypatch):
    import pickle

    from gptquant.backtest import resume

    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path / "me"))
    bars, panel = market()
    cp = tmp_path / "cp.pkl"
    full = run_topk(bars, panel, DAYS[-1])
    run_topk(bars, panel, DAYS[-1], cp)
    signed = cp.read_bytes()

    cp.write_bytes(signed[:-1] + bytes([signed[-1] ^ 1]))  # one bit changed
    tampered = run_topk(bars, panel, DAYS[-1], cp)
    assert "not used" in tampered.resume_note and "signature" in tampered.resume_note
    same(tampered, full)

    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path / "someone-else"))  # another user's key
    cp.write_bytes(signed)
    assert "signature" in run_topk(bars, panel, DAYS[-1], cp).resume_note

    # even a correctly signed file may only name backtrader's, gptquant's and the strategy's classes
    monkeypatch.setenv("GPTQUANT_CACHE", str(tmp_path / "me"))
    data = pickle.loads(resume._verified(signed))
    marker = tmp_path / "pwned"
    last = max(data["saved"])
    data["saved"][last] = (data["saved"][last][0], pickle.dumps(_Evil(marker)))
    cp.write_bytes(resume._sign(pickle.dumps(data)))
    refused = run_topk(bars, panel, DAYS[-1], cp)
    assert "refused to load posix.system" in refused.resume_note or "refused to load os.system" in refused.resume_note
    assert not marker.exists()
    same(refused, full)


def test_resume_on_another_backtrader_fails_loudly_naming_both_versions(tmp_path, monkeypatch):
    """Resume restores backtrader's private state, so it runs only on the release setup.cfg pins: another one is
    an error at load (and at save) naming both versions, never a silently wrong resumed result."""
    import configparser
    import re

    from gptquant.backtest import resume
    from gptquant.errors import GptquantError

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert f"backtrader=={resume.BACKTRADER}" in cfg["options.extras_require"]["backtest"].split()
    assert bt.__version__ == resume.BACKTRADER
    bars, panel = market()
    cp = tmp_path / "cp.pkl"
    run_topk(bars, panel, DAYS[-1], cp)
    saved = cp.read_bytes()
    opened = resume.Checkpoints(tmp_path / "new.pkl", "key", ["link"])  # opened before the version changed
    opened.saved = {0: ("link", b"state")}
    monkeypatch.setattr(bt, "__version__", "1.9.80.1")
    message = re.escape(f"built for backtrader {resume.BACKTRADER}") + ".*" + re.escape("backtrader 1.9.80.1 is installed")
    with pytest.raises(GptquantError, match=message):
        run_topk(bars, panel, DAYS[-1], cp)  # loading
    with pytest.raises(GptquantError, match=message):
        opened.write()  # saving
    assert cp.read_bytes() == saved and not (tmp_path / "new.pkl").exists()
    assert run_topk(bars, panel, DAYS[-1]).summary  # without checkpoints backtrader's public API is enough
