"""Resumed backtests never silently stale: the run key and the nightly's "inputs unchanged" check cover the
project modules a strategy imports (not only its own file) and gptquant's own code (issues 13 and 15)."""
from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

bt = pytest.importorskip("backtrader")

from gptquant.backtest.engine import run  # noqa: E402
from gptquant.backtest.job import _load_module  # noqa: E402
from gptquant.codehash import package_hash, project_sources, sources_hash  # noqa: E402
from gptquant.market.calendar import sessions  # noqa: E402

DAYS = sessions("2021-01-04", "2021-03-31")
CODES = ["600000.SH", "600036.SH", "000001.SZ", "000002.SZ"]

STRATEGY = '''
import backtrader as bt
import gq_helper_{tag}


class Follow(bt.Strategy):
    def next(self):
        for d in self.datas:
            want = gq_helper_{tag}.wants(d.score[0])
            if want and not self.getposition(d).size:
                self.buy(data=d, size=100)
            elif not want and self.getposition(d).size:
                self.close(data=d)
'''
HELPER = "def wants(score):\n    return score > {threshold}\n"


def market():
    rng = np.random.default_rng(5)
    rows = []
    for k, code in enumerate(CODES):
        close = np.round((10 + 3 * k) * np.exp(np.cumsum(rng.normal(0, 0.02, len(DAYS)))), 2)
        rows.append(pd.DataFrame({"datetime": DAYS, "instrument": code, "open": close, "high": close * 1.01,
                                  "low": close * 0.99, "close": close, "volume": 5e6}))
    panel = pd.DataFrame({"datetime": np.repeat(DAYS, len(CODES)), "instrument": np.tile(CODES, len(DAYS)),
                          "score": rng.normal(0, 1, len(DAYS) * len(CODES))}).set_index(["datetime", "instrument"])
    return pd.concat(rows, ignore_index=True), panel


def write_strategy(folder, tag, threshold):
    (folder / f"gq_helper_{tag}.py").write_text(HELPER.format(threshold=threshold))
    (folder / f"strat_{tag}.py").write_text(STRATEGY.format(tag=tag))


def load(folder, tag):
    sys.modules.pop(f"gq_helper_{tag}", None)  # run the edited helper, as a new process would
    return _load_module(f"strat_{tag}.py", folder).Follow


def test_editing_a_helper_module_the_strategy_imports_forces_a_full_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_strategy(tmp_path, "a", 0.5)
    bars, panel = market()
    cp = tmp_path / "cp.pkl"

    def night(strategy):
        return run(strategy, data=bars, panel=panel, start=DAYS[2], end=DAYS[-1], benchmark=None, checkpoints=cp)

    first = night(load(tmp_path, "a"))
    assert "full run" in first.resume_note and len(first.orders) > 4
    assert "resumed" in night(load(tmp_path, "a")).resume_note  # nothing changed: resumes
    (tmp_path / "gq_helper_a.py").write_text(HELPER.format(threshold=1.5))  # only the helper changes
    edited = night(load(tmp_path, "a"))
    assert "changed: full run" in edited.resume_note, edited.resume_note
    fresh = run(load(tmp_path, "a"), data=bars, panel=panel, start=DAYS[2], end=DAYS[-1], benchmark=None)
    pd.testing.assert_frame_equal(edited.orders, fresh.orders)  # the new helper's trades, not the old ones


def test_project_sources_follow_imports_beside_in_packages_and_inside_functions(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rules.py").write_text("from . import limits\n")
    (pkg / "limits.py").write_text("CAP = 3\n")
    (tmp_path / "util.py").write_text("import numpy\nimport json\n")
    main = tmp_path / "main.py"
    main.write_text("import util\nimport gptquant\n\ndef f():\n    from mypkg.rules import limits\n")
    found = {p.split("/")[-1] for p in project_sources(main)}
    assert found == {"main.py", "util.py", "__init__.py", "rules.py", "limits.py"}
    before = sources_hash(main)
    (pkg / "limits.py").write_text("CAP = 4\n")
    assert sources_hash(main) != before
    assert len(package_hash()) == 24


def test_the_nightly_never_skips_when_a_strategy_helper_changed(tmp_path):
    from gptquant.jobs.nightly import _paths, inputs_hash, load_config

    write_strategy(tmp_path, "n", 0.5)
    config = tmp_path / "night.toml"
    config.write_text(textwrap.dedent("""
        [news]
        source = "news.csv"
        [prices]
        bars = "bars.csv"
        [model]
        bundle = "bundle"
        [[backtest]]
        name = "follow"
        module = "strat_n.py"
    """))
    cfg = load_config(config)
    before = inputs_hash(cfg, _paths(cfg, None))
    assert inputs_hash(cfg, _paths(cfg, None)) == before
    (tmp_path / "gq_helper_n.py").write_text(HELPER.format(threshold=2.0))
    assert inputs_hash(cfg, _paths(cfg, None)) != before
