"""Decoding text files line by line: UTF-8 (a BOM allowed), else GB18030, decided for each line.

Why per line: files pasted together from several sources mix encodings, and decoding a whole file as
GB18030 because one row is not UTF-8 garbles every UTF-8 row. Splitting bytes on b"\\n" is safe in both
encodings (no multi-byte character contains 0x0A). A line that is neither is reported with its line
number and byte offset, never turned into mojibake. Shared by the news, price and label readers.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import GptquantError

BOM = b"\xef\xbb\xbf"


@dataclass
class Line:
    """One physical line: its text (with its line end), 1-based number, byte offset and how it decoded."""
    text: str
    number: int
    offset: int
    encoding: str | None  # "ascii", "utf-8", "gb18030", or None when neither decodes it
    error: str | None = None


def decode_line(raw: bytes, offset: int = 0) -> tuple[str, str | None, str | None]:
    """(text, encoding, error). Undecodable bytes give a lossy text (so the line's structure survives)
    and an error naming the file offset of the first bad byte. A line that is mostly valid UTF-8 with a
    few bad bytes is damaged UTF-8, not GB18030 (which decodes almost any bytes, into mojibake): GB18030
    text practically never forms as many valid UTF-8 characters as it has invalid sequences."""
    if raw.isascii():
        return raw.decode("ascii"), "ascii", None
    try:
        return raw.decode("utf-8"), "utf-8", None
    except UnicodeDecodeError as u8:
        lossy = raw.decode("utf-8", errors="replace")
        bad = lossy.count("\ufffd")
        if sum(c >= "\x80" for c in lossy) - bad >= bad:  # mostly valid UTF-8: damaged, not GB18030
            return lossy, None, f"invalid UTF-8 (bad byte at offset {offset + u8.start})"
        try:
            return raw.decode("gb18030"), "gb18030", None
        except UnicodeDecodeError as gb:
            return (raw.decode("utf-8", errors="replace"), None,
                    f"neither UTF-8 (bad byte at offset {offset + u8.start}) nor GB18030 (bad byte at offset {offset + gb.start})")


def iter_lines(path):
    """Yield Line objects of a file, read in binary and decoded one line at a time (constant memory)."""
    with open(path, "rb") as fh:
        yield from _decode_lines(fh, path)


def _decode_lines(raw_lines, name):
    stats = MixedEncodings(name)
    offset = 0
    for number, raw in enumerate(raw_lines, start=1):
        start = offset
        offset += len(raw)
        if number == 1 and raw.startswith(BOM):
            raw, start = raw[len(BOM):], start + len(BOM)
        text, enc, err = decode_line(raw, start)
        stats.add(number, enc)
        yield Line(text, number, start, enc, err)
    stats.warn()


class MixedEncodings:
    """Counts lines per encoding and warns once when one file mixes UTF-8 and GB18030 lines."""

    def __init__(self, name):
        self.name, self.utf8, self.gb = name, 0, []

    def add(self, number: int, encoding: str | None) -> None:
        if encoding == "utf-8":
            self.utf8 += 1
        elif encoding == "gb18030":
            self.gb.append(number)

    def warn(self) -> None:
        if self.utf8 and self.gb:
            shown = ", ".join(map(str, self.gb[:10])) + (" ..." if len(self.gb) > 10 else "")
            warnings.warn(f"{self.name}: mixed encodings: {len(self.gb)} line(s) decoded as GB18030 (line {shown}), "
                          f"{self.utf8} as UTF-8", stacklevel=3)


def read_text(path) -> str:
    """A whole file's text, decoded per line; an undecodable line is an error naming its line and offset."""
    return decode_text(Path(path).read_bytes(), path)


def decode_text(data: bytes, name) -> str:
    """Bytes of a text file (named `name` in messages) decoded per line, as read_text."""
    try:
        return data[len(BOM):].decode("utf-8") if data.startswith(BOM) else data.decode("utf-8")  # at C speed
    except UnicodeDecodeError:
        pass
    out = []
    for line in _decode_lines(io.BytesIO(data), name):
        if line.error:
            raise GptquantError(f"{name}: line {line.number}: {line.error}; re-save the file as UTF-8")
        out.append(line.text)
    return "".join(out)
