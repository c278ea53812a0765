"""CSV records with their row numbers, where a bad row is a reject with a reason, never a shifted column.

pandas gives a ragged first row's extra field to the index (every column shifts by one), stops the whole
file at a row with extra fields, and needs one encoding for the file. Here each record is checked on its
own: decoded per line (gptquant.encoding), field count against the header, quoting (strict), so one bad
row costs only itself. A quote that is never closed would swallow the rest of the file: a multi-line
record that is ragged or malformed rejects its first line only and reading resumes on the next line.
"""
from __future__ import annotations

import csv
import gc
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass

from .encoding import iter_lines
from .errors import GptquantError

csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # long articles are text, not an error


@dataclass
class Record:
    row: int                   # 1-based data row (the header and blank lines are not rows)
    line: int                  # first physical line of the record
    fields: list[str] | None   # None when rejected
    reason: str | None = None


class _Source:
    """Decoded lines fed to csv.reader, remembering the lines of the current record so it can rewind."""

    def __init__(self, path):
        self.lines = iter_lines(path)
        self.pending: deque = deque()
        self.taken: list = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.pending.popleft() if self.pending else next(self.lines)
        self.taken.append(line)
        return line.text

    def start(self) -> None:
        self.taken = []

    def rewind_after_first(self) -> None:
        """Give back every line of the current record but its first."""
        self.pending.extendleft(reversed(self.taken[1:]))
        self.taken = self.taken[:1]


def read_header(path, sep: str = ","):
    """(column names, records iterator). Empty or unnamed columns are named like pandas ('Unnamed: i');
    repeated names get '.1', '.2' suffixes."""
    src = _Source(path)
    reader = csv.reader(src, delimiter=sep, strict=True)
    header = None
    while header is None:
        src.start()
        try:
            fields = next(reader)
        except StopIteration:
            raise GptquantError(f"{path}: empty file (no header row)") from None
        except csv.Error as exc:
            raise GptquantError(f"{path}: line {src.taken[0].number if src.taken else 1}: malformed header ({exc})") from None
        bad = next((ln for ln in src.taken if ln.error), None)
        if bad is not None:
            raise GptquantError(f"{path}: header line {bad.number}: {bad.error}")
        if fields:
            header = _names(fields)
    return header, _records(src, reader, len(header), sep)


def _records(src: _Source, reader, width: int, sep: str):
    row = 0
    while True:
        src.start()
        try:
            fields = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as exc:
            fields, error = None, f"malformed CSV ({exc})"
        if not src.taken:  # csv.Error at the very end (e.g. an unclosed quote on the last line)
            return
        lines = src.taken
        if fields == [] and error is None:
            continue  # blank line
        row += 1
        first = lines[0].number
        bad = next((ln for ln in lines if ln.error), None)
        if error is not None or (len(lines) > 1 and len(fields) != width):
            if len(lines) > 1:  # an unbalanced quote: only the first line is lost
                src.rewind_after_first()
                reader = csv.reader(src, delimiter=sep, strict=True)
                why = error or f"{len(fields)} fields, the header has {width}"
                error = f"unbalanced quote or malformed CSV at line {first} ({why})"
            if bad is not None and bad is lines[0]:
                error = f"line {first}: {bad.error}"
            yield Record(row, first, None, error)
            continue
        if bad is not None:
            yield Record(row, first, None, f"line {bad.number}: {bad.error}")
        elif len(fields) != width:
            yield Record(row, first, None, f"line {first}: {len(fields)} fields, the header has {width}")
        else:
            yield Record(row, first, fields)


def _names(fields: list[str]) -> list[str]:
    out, seen = [], {}
    for i, f in enumerate(fields):
        name = f if f.strip() else f"Unnamed: {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


@contextmanager
def gc_paused():
    """The cyclic garbage collector off while a table's rows become Python objects (they form no cycles): its
    passes over the growing heap made a 1M-row news read superlinear (a third of the time at 300k rows).
    Also a decorator."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
