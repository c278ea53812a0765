"""Bars and benchmark loading: code forms, file layouts, limits, point-in-time momentum, clear errors."""
from __future__ import annotations

import pandas as pd
import pytest

from gptquant.errors import GptquantError
from gptquant.market.prices import load_bars, load_benchmark, momentum_panel, price_limits


def bars_frame(codes, dates=("2021-03-01", "2021-03-02"), close=10.0):
    return pd.DataFrame([dict(date=d, code=c, open=close, high=close, low=close, close=close, volume=1000)
                         for c in codes for d in dates])


def test_every_accepted_code_form_becomes_canonical(tmp_path):
    forms = ["600519", "600519.SH", "600519.SHA", "SH600519", "sh600519"]
    frames = [bars_frame([f], dates=(f"2021-03-0{i + 1}",)) for i, f in enumerate(forms)]
    path = tmp_path / "bars.csv"
    pd.concat(frames).to_csv(path, index=False)
    bars = load_bars(path)
    assert list(bars["instrument"].unique()) == ["600519.SH"]
    assert list(bars.columns) == ["datetime", "instrument", "open", "high", "low", "close", "volume"]
    assert bars["datetime"].is_monotonic_increasing and len(bars) == 5


def test_six_digit_codes_keep_leading_zeros_and_volume_lots_become_shares(tmp_path):
    path = tmp_path / "bars.csv"
    bars_frame(["000001"]).assign(pre_close=10.0, amount=5.0).to_csv(path, index=False)
    bars = load_bars(path, volume_unit="lots")
    assert set(bars["instrument"]) == {"000001.SZ"}
    assert list(bars["volume"]) == [100_000, 100_000]
    assert {"pre_close", "amount"} <= set(bars.columns)


def test_folder_of_per_instrument_files_takes_codes_from_file_names(tmp_path):
    for code in ("600000", "000002"):
        bars_frame([code]).drop(columns="code").to_csv(tmp_path / f"{code}.csv", index=False)
    bars_frame(["300750"]).drop(columns="code").to_parquet(tmp_path / "300750.SZ.parquet")
    bars = load_bars(tmp_path, instruments=["sh600000", "300750"], start="2021-03-02")
    assert sorted(bars["instrument"].unique()) == ["300750.SZ", "600000.SH"]
    assert (bars["datetime"] == pd.Timestamp("2021-03-02")).all()


def test_bad_input_names_the_file_row_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    bars_frame(["600000"]).drop(columns="volume").to_csv(path, index=False)
    with pytest.raises(GptquantError, match=r"bad.csv: missing column\(s\) \['volume'\]"):
        load_bars(path)
    df = bars_frame(["600000"]).astype({"close": object})
    df.loc[1, "close"] = "n/a"
    with pytest.raises(GptquantError, match=r"row 2: column 'close' is not a number"):
        load_bars(df)
    with pytest.raises(GptquantError, match=r"row 3: not an A-share instrument code: 'AAPL'"):
        load_bars(pd.concat([bars_frame(["600000"]), bars_frame(["AAPL"])], ignore_index=True))
    with pytest.raises(GptquantError, match="duplicate bars"):
        load_bars(pd.concat([bars_frame(["600000"])] * 2))
    with pytest.raises(GptquantError, match="no bars for 1 requested instrument"):
        load_bars(bars_frame(["600000"]), instruments=["000001"])


def test_price_limits_follow_board_date_and_st():
    bars = pd.DataFrame({
        "datetime": pd.to_datetime(["2020-08-21", "2020-08-24", "2021-01-04", "2021-01-04", "2021-01-04", "2021-01-04"]),
        "instrument": ["300001.SZ", "300001.SZ", "688001.SH", "600000.SH", "600001.SH", "430047.BJ"],
        "close": 10.0,
        "pre_close": [10.0, 10.0, 10.0, 10.05, 10.0, 10.0],
        "st": [False, False, False, False, True, False],
    })
    lim = price_limits(bars)
    assert list(lim["up_limit"]) == [11.0, 12.0, 12.0, 11.06, 10.5, 13.0]  # 10.05 × 1.1 = 11.055 rounds half up
    assert list(lim["down_limit"]) == [9.0, 8.0, 8.0, 9.05, 9.5, 7.0]      # 10.05 × 0.9 = 9.045 rounds half up


def test_limits_use_the_previous_bar_when_there_is_no_pre_close():
    bars = bars_frame(["600000"], dates=("2021-03-01", "2021-03-02", "2021-03-03"))
    bars["close"] = [10.0, 11.0, 12.0]
    bars[["open", "high", "low"]] = bars[["close"] * 3].to_numpy()  # a consistent bar: low <= open, close <= high
    bars = load_bars(bars)
    lim = price_limits(bars)
    assert lim["up_limit"].isna().iloc[0] and list(lim["up_limit"].iloc[1:]) == [11.0, 12.1]


def test_momentum_panel_row_uses_only_closes_before_that_session():
    bars = bars_frame(["600000"], dates=[f"2021-03-0{i}" for i in range(1, 6)])
    bars["close"] = [10.0, 11.0, 12.0, 13.0, 100.0]
    bars[["open", "high", "low"]] = bars[["close"] * 3].to_numpy()  # a consistent bar: low <= open, close <= high
    panel = momentum_panel(load_bars(bars), window=1)
    values = panel["momentum"].droplevel("instrument")
    # row D = close(D-1) / close(D-2) - 1: the jump to 100 on the last day is not visible that day
    assert values.to_dict() == {pd.Timestamp("2021-03-03"): pytest.approx(0.1),
                                pd.Timestamp("2021-03-04"): pytest.approx(1 / 11),
                                pd.Timestamp("2021-03-05"): pytest.approx(1 / 12)}


def test_benchmark_from_a_file_with_an_index_code_or_a_folder(tmp_path):
    df = pd.DataFrame({"date": ["2021-03-01", "2021-03-02", "2021-03-01"], "code": ["000300", "000300", "000905"],
                       "close": [5000.0, 5050.0, 6000.0]})
    df.to_csv(tmp_path / "csi_000300_daily.csv", index=False)
    s = load_benchmark(tmp_path / "csi_000300_daily.csv")
    assert s.name == "000300.SH" and list(s) == [5000.0, 5050.0]
    assert list(load_benchmark(tmp_path, start="2021-03-02")) == [5050.0]
    with pytest.raises(GptquantError, match="expected one file named with 000852"):
        load_benchmark(tmp_path, code="000852.SH")


def test_shared_price_files_load(shared_data):
    astock = load_bars(shared_data / "astock_prices" / "astock_daily.csv", instruments=["600519", "000001"],
                       start="2019-01-01", end="2019-12-31", volume_unit="lots")
    assert set(astock["instrument"]) == {"600519.SH", "000001.SZ"} and "pre_close" in astock.columns
    assert astock.groupby("instrument").size().max() == 244  # 2019 has 244 XSHG sessions
    csmd = load_bars(shared_data / "csmd_news_prices" / "csmd_prices.csv", instruments=["600519"])
    assert csmd["datetime"].min() == pd.Timestamp("2021-01-04")
    csi = load_benchmark(shared_data / "cn_index_daily" / "csi300_000300_daily.csv", start="2019-01-01", end="2021-12-31")
    assert len(csi) == 730 and csi.index.is_monotonic_increasing


def test_loaded_bars_load_again_unchanged_and_numeric_flags_are_checked():
    raw = pd.concat([bars_frame(["600000"]), bars_frame(["000001.SZA"])], ignore_index=True).assign(st=[0.0, 1.0, float("nan"), 0.0])
    bars = load_bars(raw)
    assert list(bars["st"]) == [False, False, False, True]  # 000001.SZ sorts first; NaN = not ST
    again = load_bars(bars)  # already clean (the nightly job's cached frame): same values, same dtypes
    pd.testing.assert_frame_equal(again, bars, check_exact=True)
    with pytest.raises(GptquantError, match=r"row 2: column 'st' must be a true/false flag, got .*2\.0"):
        load_bars(raw.assign(st=[0.0, 2.0, 0.0, 0.0]))
    with pytest.raises(GptquantError, match=r"row 3: not an A-share instrument code"):
        load_bars(raw.assign(code=["600000", "600000", None, "000001"]))
