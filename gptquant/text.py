"""Text normalisation and instrument-code parsing: the only text rules every stage shares.

Normalisation is deliberately light. Chinese GPT-2 checkpoints were trained on text with full-width
punctuation (，。：), so we must not fold those to ASCII; we only undo markup and width variants of
ASCII letters/digits that tokenizers split differently, and collapse whitespace.
"""
from __future__ import annotations

import functools
import html
import re
from datetime import date

_TAG = re.compile(r"<[^>]+>")
# full-width ASCII letters and digits (Ａ-Ｚ ａ-ｚ ０-９) -> half-width; punctuation stays as trained
_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for c in list(range(0xFF10, 0xFF1A)) + list(range(0xFF21, 0xFF3B)) + list(range(0xFF41, 0xFF5B))}
_FULLWIDTH_ALNUM[0x3000] = 0x20  # ideographic space
_NEEDS_FOLD = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u3000]")


def normalize_text(text: str) -> str:
    """Strip HTML tags and entities, fold full-width letters/digits, collapse whitespace."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    if _NEEDS_FOLD.search(text):  # a scan at C speed; translate() looks every character up in a dict
        text = text.translate(_FULLWIDTH_ALNUM)
    return " ".join(text.split())  # str.split() and re's \s agree on what whitespace is (str.isspace)


# ---- instrument codes -------------------------------------------------------------------------

_CODE = re.compile(r"^\s*(?:(SH|SZ|BJ)\s*)?([0-9]{6})(?:\s*\.\s*(SH|SZ|BJ|SHA|SZA|BJA|SS|XSHG|XSHE))?\s*$", re.I | re.A)
_FULLWIDTH_CODE = {**_FULLWIDTH_ALNUM, 0xFF0E: 0x2E}  # full-width letters, digits, '．'; ideographic space
_SUFFIX = {"SH": "SH", "SHA": "SH", "SS": "SH", "XSHG": "SH", "SZ": "SZ", "SZA": "SZ", "XSHE": "SZ", "BJ": "BJ", "BJA": "BJ"}


def exchange_of(code6: str) -> str:
    """Exchange implied by a 6-digit A-share code (SH: 6xx/9xx and indices 000xxx need an explicit suffix)."""
    if code6[0] in "69" or code6[:3] in ("500", "510", "511", "512", "513", "515", "518", "588"):
        return "SH"
    if code6[0] in "48" or code6[:2] == "92":
        return "BJ"
    return "SZ"


def normalize_code(code) -> str:
    """Canonical instrument code: '600519' / 'sh600519' / '600519.SHA' -> '600519.SH'.

    Raises ValueError naming the input when it is not an A-share code. A bare 000300 is read as
    the Shenzhen stock 000300; write '000300.SH' for the CSI 300 index.
    """
    if isinstance(code, (int,)) and not isinstance(code, bool):
        code = f"{code:06d}"
    if not isinstance(code, str):
        raise ValueError(f"instrument code must be a string, got {code!r}")
    return _normalize_str(str(code))


@functools.lru_cache(maxsize=1 << 16)
def _normalize_str(code: str) -> str:
    """The parse behind normalize_code, cached: strategies look codes up hundreds of thousands of times a run."""
    m = _CODE.match(code.translate(_FULLWIDTH_CODE))  # ６００５１９．ＳＨ is 600519.SH; other scripts' digits are not
    if not m:
        raise ValueError(f"not an A-share instrument code: {code!r}")
    prefix, digits, suffix = m.groups()
    exch = _SUFFIX[suffix.upper()] if suffix else (prefix.upper() if prefix else exchange_of(digits))
    if prefix and suffix and prefix.upper() != exch:
        raise ValueError(f"conflicting exchange in instrument code: {code!r}")
    return f"{digits}.{exch}"


def split_codes(value) -> list[str]:
    """Parse one cell holding one or many codes ('600519', '600519.SH;000001', "['600519']")."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = re.split(r"[\s,;|/、，；\[\]'\"]+", str(value))
    return [normalize_code(p) for p in parts if p]


def board_of(code: str) -> str:
    """Board of a canonical code: main, chinext, star or bse."""
    digits, exch = code.split(".")
    if exch == "BJ":
        return "bse"
    if exch == "SZ" and digits[:3] in ("300", "301"):
        return "chinext"
    if exch == "SH" and digits[:3] in ("688", "689"):
        return "star"
    return "main"


CHINEXT_20PCT_FROM = date(2020, 8, 24)


def limit_ratio(code: str, day, st: bool = False) -> float:
    """Daily price-limit ratio for a canonical code on a day (ST 5 %, main 10 %, ChiNext/STAR 20 %, BSE 30 %)."""
    board = board_of(code)
    if board == "bse":
        return 0.30
    if st:
        # ST on ChiNext/STAR follows the board's 20 % after the 2020 reform; main-board ST is 5 %
        if board == "star" or (board == "chinext" and _as_date(day) >= CHINEXT_20PCT_FROM):
            return 0.20
        return 0.05
    if board == "star":
        return 0.20
    if board == "chinext":
        return 0.20 if _as_date(day) >= CHINEXT_20PCT_FROM else 0.10
    return 0.10


def _as_date(day) -> date:
    if hasattr(day, "date") and callable(day.date):
        return day.date()
    if isinstance(day, date):
        return day
    from datetime import datetime

    return datetime.fromisoformat(str(day)).date()
