"""Issue 15, fuzz: thousands of seeded malformed rows (bad bytes, wrong field counts, huge fields, control
characters, CJK punctuation in numbers). No traceback; every input row is either in the output or in the
rejects with a reason; the counts add up; every clean row comes through unchanged."""
from __future__ import annotations

import csv
import io
import warnings

import numpy as np
import pytest
import pandas as pd

from gptquant.errors import GptquantError
from gptquant.runtime.news import iter_news, read_news

N_ROWS = 3000
CONTROL = [chr(c) for c in (0, 1, 7, 8, 11, 12, 27, 31, 127)] + ["\r", "\u2028", "\ufeff"]
CJK_DIGITS = ["６００５１９", "600，519", "６００５１９．ＳＨ", "60O519", "600519。", "２０２４－０３－０１", "12，5"]


def _news_row(rng, i: int) -> tuple[list[str], str, bool]:
    """(fields, encoding, clean) for data row i."""
    day = pd.Timestamp("2024-01-02") + pd.Timedelta(days=int(rng.integers(0, 700)), minutes=int(rng.integers(0, 1440)))
    fields = [day.strftime("%Y-%m-%d %H:%M"), f"第{i}条：公司公告，拟回购股份", f"{rng.choice(['600519', '000001', '300750'])}"]
    kind = rng.integers(0, 10)
    if kind == 0:    # wrong field count
        fields = fields + ["x"] * int(rng.integers(1, 3)) if rng.random() < 0.5 else fields[: int(rng.integers(1, 3))]
    elif kind == 1:  # control characters anywhere
        j = int(rng.integers(0, 3))
        fields[j] = fields[j][:3] + str(rng.choice(CONTROL)) + fields[j][3:]
    elif kind == 2:  # CJK punctuation or full-width digits in numbers and dates
        j = int(rng.choice([0, 2]))
        fields[j] = str(rng.choice(CJK_DIGITS))
    elif kind == 3:  # a huge field
        fields[1] = "长" * int(rng.integers(20_000, 150_000)) if rng.random() < 0.05 else fields[1] * 200
    elif kind == 4:  # odd dates
        fields[0] = str(rng.choice(["03/04/2024", "31/12/2024 10:00", "2024-13-01", "", "yesterday", "1e10", "2024年3月1日"]))
    elif kind == 5:  # quotes inside text
        fields[1] = '他说"回购"，' + fields[1]
    clean = kind >= 6
    return fields, ("gb18030" if kind == 7 else "utf-8"), clean


def _write(rows, rng) -> tuple[bytes, dict]:
    out, damaged = [], {}
    for n, (fields, enc, _) in enumerate(rows, start=1):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(fields)
        line = buf.getvalue().encode(enc, errors="replace")
        if rng.random() < 0.04:  # bad bytes: never a newline, comma or quote, so the row stays one row
            at = int(rng.integers(0, len(line) - 1))
            line = line[:at] + bytes(rng.integers(0x80, 0x100, size=int(rng.integers(1, 4))).astype(np.uint8)) + line[at:]
            damaged[n] = line
        out.append(line)
    return b"datetime,text,instrument\n" + b"".join(out), damaged


def test_news_reader_fuzz(tmp_path):
    rng = np.random.default_rng(15)
    rows = [_news_row(rng, i) for i in range(1, N_ROWS + 1)]
    path = tmp_path / "fuzz.csv"
    data, damaged = _write(rows, rng)
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arts, rej = read_news(path)
        streamed = list(iter_news(path, chunk_rows=257))
    assert len(arts) + len(rej) == N_ROWS
    assert sorted([*arts["row"], *rej["row"]]) == list(range(1, N_ROWS + 1))
    assert rej["reason"].map(lambda r: isinstance(r, str) and len(r) > 5).all()
    got = dict(zip(arts["row"], arts["text"]))
    for n, (fields, enc, clean) in enumerate(rows, start=1):
        if clean and n not in damaged:
            assert got.get(n) == fields[1], n  # every clean row comes through, unchanged
        elif n in damaged and enc == "utf-8" and n in got:  # bad bytes that happen to form valid UTF-8
            assert got[n].encode("utf-8") in damaged[n], n  # read as UTF-8, never as GB18030 mojibake
    assert len(damaged) > 50
    s_arts = pd.concat([a for a, _ in streamed], ignore_index=True)
    s_rej = pd.concat([r for _, r in streamed], ignore_index=True)
    assert s_arts["row"].tolist() == arts["row"].tolist() and sorted(s_rej["row"]) == sorted(rej["row"])
    assert (rej["reason"].str.contains("fields, the header has 3")).sum() > 0.05 * N_ROWS


def _bar_row(rng, i: int) -> tuple[list[str], bool]:
    """(fields, clean) for bar row i: one instrument per row number, so no two rows share (date, code)."""
    lo = float(rng.uniform(5, 50))
    hi = lo * float(rng.uniform(1.0, 1.1))
    op, cl = (float(rng.uniform(lo, hi)) for _ in range(2))
    fields = ["2024-03-01", f"{600000 + i:06d}", f"{op:.2f}", f"{hi:.2f}", f"{lo:.2f}", f"{cl:.2f}", str(int(rng.integers(0, 10**7)))]
    fields[2] = f"{min(max(float(fields[2]), float(fields[4])), float(fields[3])):.2f}"  # keep inside after rounding
    fields[5] = f"{min(max(float(fields[5]), float(fields[4])), float(fields[3])):.2f}"
    kind = rng.integers(0, 12)
    if kind == 0:
        fields = fields + ["x"] if rng.random() < 0.5 else fields[:5]
    elif kind == 1:
        j = int(rng.integers(2, 7))
        fields[j] = str(rng.choice(["inf", "-inf", "nan", "", "-1", "1e400", "１２，５", "12。5", "12\x00", "\x1b5"]))
    elif kind == 2:
        fields[3], fields[4] = fields[4], str(float(fields[3]) + 1)  # high < low
    elif kind == 3:
        fields[5] = f"{float(fields[3]) * 1.5:.2f}"  # close above high
    elif kind == 4:
        fields[int(rng.choice([0, 1]))] = str(rng.choice(["2024-13-45", "６０００００", "AAPL", "", "x" * 70_000, "３月"]))
    return fields, kind >= 5


def test_price_reader_fuzz(tmp_path):
    from gptquant.market.prices import load_bars

    rng = np.random.default_rng(16)
    rows = [_bar_row(rng, i) for i in range(1, N_ROWS + 1)]
    lines = []
    for fields, _ in rows:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(fields)
        line = buf.getvalue().encode("utf-8")
        if rng.random() < 0.03:  # bad bytes inside a number
            at = int(rng.integers(0, len(line) - 1))
            line = line[:at] + bytes(rng.integers(0x80, 0x100, size=2).astype(np.uint8)) + line[at:]
        lines.append(line)
    path = tmp_path / "bars.csv"
    path.write_bytes(b"date,code,open,high,low,close,volume\n" + b"".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bars, rejects = load_bars(path, bad_rows="reject")
    assert len(bars) + len(rejects) == N_ROWS
    kept = {int(c[:6]) - 600000 for c in bars["instrument"]}
    assert sorted(kept | set(rejects["row"])) == list(range(1, N_ROWS + 1)) and not kept & set(rejects["row"])
    assert rejects["reason"].map(lambda r: isinstance(r, str) and len(r) > 5).all()
    assert all(n in kept for n, (_, clean) in enumerate(rows, start=1) if clean and lines[n - 1].isascii())
    assert np.isfinite(bars[["open", "high", "low", "close", "volume"]].to_numpy()).all()
    assert ((bars["low"] <= bars["close"]) & (bars["close"] <= bars["high"]) & (bars["low"] > 0)).all()
    with pytest.raises(GptquantError, match=r"bars.csv: (row|line) \d+"):  # the default refuses, naming a row
        load_bars(path)
