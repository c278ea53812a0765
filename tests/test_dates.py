"""Datetime parsing in one place (gptquant.runtime.dates): the vectorised path gives exactly what the per-value
rules give, and every value it cannot use comes back with its reason, named by row in the news and panel rejects."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gptquant.features.panel import build_panel
from gptquant.runtime import dates
from gptquant.runtime.news import read_news

VALUES = [
    "2024-03-04", "2024-03-04 10:00", "2024-03-04 10:00:05", "2024-03-04T10:00:05", "2024-03-04 10:00:05.123456",
    "2024-02-30 10:00", "2024-13-01", "2024-03-04 25:00", "0600-01-01", "1899-12-31 23:59", "2300-01-01 00:00",
    " 2024-03-04 ", "2024/03/04", "20240304", "2024年3月4日 10:00", "２０２４-０３-０４", "2024-3-4",
    "03/04/2024", "31/03/2024", "2024-03-04T01:00:00Z", "2024-03-04 10:00:00+08:00", "", "  ", None, float("nan"),
    5, 3.5, True, pd.Timestamp("2024-03-04 10:00"), pd.Timestamp("2024-03-04 02:00", tz="UTC"), pd.NaT, "x" * 80,
    "2024-03-04\x01", "abc",
]


def per_value(values, required, order):
    """The per-value rules alone, as the readers applied them before the vectorised path."""
    out = [dates._one(v, required, order) for v in values]
    return pd.DatetimeIndex([t for t, _ in out], dtype="datetime64[ns]"), [r for _, r in out]


@pytest.mark.parametrize("order", dates.DATE_ORDERS)
@pytest.mark.parametrize("required", [True, False])
def test_vectorised_parse_equals_the_per_value_rules(order, required):
    values = VALUES * 3  # the common form in bulk, the rest mixed in
    times, reasons = dates.parse_datetimes(values, required, order)
    want_times, want_reasons = per_value(values, required, order)
    assert reasons == want_reasons
    assert times.equals(want_times)
    assert times[0] == pd.Timestamp("2024-03-04") and "2024-02-30" in reasons[5] and "1900-2200" in reasons[9]


def test_datetime64_columns_are_converted_and_checked():
    col = pd.Series(pd.to_datetime(["2024-03-04 01:00", None, "1850-01-01 00:00"]).tz_localize("UTC"))
    times, reasons = dates.parse_datetimes(col, required=True)
    assert times[0] == pd.Timestamp("2024-03-04 09:00") and times[1:].isna().all()
    assert reasons[0] == "" and reasons[1] == "missing datetime" and "outside the years" in reasons[2]
    assert reasons == per_value(col.tolist(), True, None)[1]


def test_bad_values_in_a_large_file_are_reported_by_row(tmp_path):
    n = 5000
    when = pd.Timestamp("2021-03-01 08:00") + pd.to_timedelta(np.arange(n), unit="min")
    stamps = when.strftime("%Y-%m-%d %H:%M:%S").tolist()
    stamps[2], stamps[3999] = "2021-02-30 08:00:00", "03/04/2021 08:00"  # rows 3 and 4000
    path = tmp_path / "n.csv"
    pd.DataFrame({"datetime": stamps, "text": "甲公司公告回购", "instrument": "600519"}).to_csv(path, index=False)
    arts, rejects = read_news(path)
    assert rejects["row"].tolist() == [3, 4000]
    assert "unparseable datetime '2021-02-30 08:00:00'" in rejects["reason"].iloc[0]
    assert "ambiguous date '03/04/2021 08:00'" in rejects["reason"].iloc[1]
    keep = np.setdiff1d(np.arange(n), [2, 3999])
    assert pd.DatetimeIndex(arts["datetime"]).equals(pd.DatetimeIndex(when[keep]).as_unit("ns"))


def test_the_panel_parses_with_the_same_rules_and_names_the_reason():
    news = pd.DataFrame({"article_id": [1, 2, 3], "datetime": ["2024-01-02 08:00:00", "03/04/2024 08:00", "2024年1月3日 08:00"],
                         "instruments": [["600519.SH"]] * 3})
    feats = pd.DataFrame({"article_id": [1, 2, 3], "sentiment": [1.0, 2.0, 3.0]})
    panel, rejects = build_panel(feats, news, return_rejects=True)
    assert rejects["row"].tolist() == [2]  # a day/month order the panel used to guess (month first)
    assert "ambiguous date '03/04/2024 08:00'" in rejects["reason"].iloc[0]
    assert panel["sentiment_sum"].dropna().to_dict() == {(pd.Timestamp("2024-01-02"), "600519.SH"): 1.0,
                                                         (pd.Timestamp("2024-01-03"), "600519.SH"): 3.0}
