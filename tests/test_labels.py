"""Market-feedback labels: the first tradable session's open-to-close excess return over the benchmark,
point in time, every news row labelled or rejected with a reason."""
from __future__ import annotations

import pandas as pd
import pytest

from gptquant.cli import main
from gptquant.errors import GptquantError
from gptquant.features.labels import market_labels
from gptquant.market.calendar import sessions

DAYS = sessions("2023-03-01", "2023-03-31")[:10]  # Wed 1 Mar … Tue 14 Mar 2023


def bars(moves: dict) -> pd.DataFrame:
    """Daily bars: open 10, close 10 * (1 + move) per (instrument, day); 600001 is suspended on DAYS[3]."""
    rows = []
    for inst in ("600001.SH", "000002.SZ"):
        for d in DAYS:
            if inst == "600001.SH" and d == DAYS[3]:
                continue
            r = moves.get((inst, d), 0.0)
            rows.append((d, inst, 10.0, 10.0 * (1 + max(r, 0)) + 0.1, 9.0, 10.0 * (1 + r), 1e6))
    return pd.DataFrame(rows, columns=["datetime", "instrument", "open", "high", "low", "close", "volume"])


def bench(move=0.002) -> pd.DataFrame:
    return pd.DataFrame({"datetime": DAYS, "code": "000300", "open": 4000.0, "high": 4100.0, "low": 3900.0,
                         "close": 4000.0 * (1 + move), "volume": 1e9})


def news(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["datetime", "instrument", "text"])


def test_entry_session_is_the_first_one_the_news_can_trade_in():
    moves = {("600001.SH", DAYS[1]): 0.05, ("600001.SH", DAYS[2]): -0.05, ("000002.SZ", DAYS[2]): 0.0,
             ("600001.SH", DAYS[4]): 0.04}
    n = news([
        (DAYS[1] + pd.Timedelta("08:00:00"), "600001", "盘前公告"),  # before the open: trades DAYS[1]
        (DAYS[1] + pd.Timedelta("10:30:00"), "600001", "盘中公告"),  # during the session: trades DAYS[2]
        (DAYS[1] + pd.Timedelta("10:30:00"), "000002", "另一只股票"),
        (DAYS[3] - pd.Timedelta("12:00:00"), "600001", "停牌前夜"),  # DAYS[3] suspended: first bar after
    ])
    labels, rejects = market_labels(n, bars(moves), bench())
    assert rejects.empty
    got = labels.set_index("text")
    assert got.loc["盘前公告", "session"] == DAYS[1] and got.loc["盘前公告", "label"] == "positive"
    assert got.loc["盘中公告", "session"] == DAYS[2] and got.loc["盘中公告", "label"] == "negative"
    assert got.loc["另一只股票", "label"] == "neutral"
    assert got.loc["停牌前夜", "session"] == DAYS[4]
    r = got.loc["盘前公告"]
    assert r["excess_return"] == pytest.approx(0.05 - 0.002)
    assert r["stock_return"] - r["benchmark_return"] == pytest.approx(r["excess_return"])


def test_prices_before_the_news_cannot_change_its_label():
    n = news([(DAYS[1] + pd.Timedelta("10:30:00"), "600001", "盘中公告")])
    base, _ = market_labels(n, bars({("600001.SH", DAYS[2]): 0.03}), bench())
    moved, _ = market_labels(n, bars({("600001.SH", DAYS[2]): 0.03, ("600001.SH", DAYS[1]): -0.09}), bench())
    pd.testing.assert_frame_equal(base, moved)


def test_thresholds_horizon_and_multi_code_news():
    moves = {("600001.SH", DAYS[1]): 0.004, ("000002.SZ", DAYS[1]): 0.03}
    n = news([(DAYS[1] + pd.Timedelta("07:00:00"), "600001,000002", "两只股票")])
    labels, _ = market_labels(n, bars(moves), bench(0.0), down=-0.005, up=0.005)
    assert dict(zip(labels["instrument"], labels["label"])) == {"600001.SH": "neutral", "000002.SZ": "positive"}
    wide, _ = market_labels(n, bars(moves), bench(0.0), down=-0.001, up=0.001)
    assert dict(zip(wide["instrument"], wide["label"]))["600001.SH"] == "positive"
    two, _ = market_labels(n, bars(moves), bench(0.0), horizon=2)
    assert (two["exit_session"] == DAYS[2]).all()
    with pytest.raises(GptquantError, match="down <= up"):
        market_labels(n, bars(moves), bench(), down=0.01, up=-0.01)


def test_unlabelable_rows_are_rejected_with_a_reason_not_dropped():
    n = news([
        (DAYS[-1] + pd.Timedelta("10:00:00"), "600001", "太新了"),  # its session has no bar yet
        (DAYS[1] + pd.Timedelta("08:00:00"), "601999", "没有行情"),
        (DAYS[1] + pd.Timedelta("08:00:00"), "600001", "正常"),
    ])
    labels, rejects = market_labels(n, bars({}), bench())
    assert labels["text"].tolist() == ["正常"]
    reasons = dict(zip(rejects["row"], rejects["reason"]))
    assert set(reasons) == {1, 2}
    assert "yet" in reasons[1] and "601999.SH" in reasons[2]


def test_label_market_cli_writes_labels_and_rejects(tmp_path, capsys):
    n = news([(DAYS[1] + pd.Timedelta("08:00:00"), "600001", "公告甲"),
              (DAYS[1] + pd.Timedelta("08:00:00"), "688999", "无行情")])
    n.to_csv(tmp_path / "news.csv", index=False)
    bars({("600001.SH", DAYS[1]): -0.03}).to_csv(tmp_path / "bars.csv", index=False)
    bench().to_csv(tmp_path / "csi300.csv", index=False)
    assert main(["label", "market", "--news", str(tmp_path / "news.csv"), "--prices", str(tmp_path / "bars.csv"),
                 "--benchmark", str(tmp_path / "csi300.csv"), "--out", str(tmp_path / "labels.csv")]) == 0
    out = pd.read_csv(tmp_path / "labels.csv")
    assert out["label"].tolist() == ["negative"]
    assert len(pd.read_csv(tmp_path / "labels.rejects.csv")) == 1
    assert "1 rejected" in capsys.readouterr().out
