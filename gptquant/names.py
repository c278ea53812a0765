"""User-given names that become file or folder names (backtest names, run ids, sweep points, bundle
names) pass one check, so `name = "../../x"` can never write outside the folder it belongs in."""
from __future__ import annotations

import re

from .errors import GptquantError

_SAFE = re.compile(r"[A-Za-z0-9._-]{1,128}", re.ASCII)


def safe_name(name, what: str = "name") -> str:
    """`name` unchanged when it is 1-128 characters of [A-Za-z0-9._-], not all dots and without '..';
    otherwise a GptquantError naming `what` and the value."""
    if not isinstance(name, str) or not _SAFE.fullmatch(name) or ".." in name or set(name) == {"."}:
        raise GptquantError(f"{what} {name!r} cannot be used as a file name: use 1-128 of A-Z a-z 0-9 . _ - "
                            "(no '..', no slashes or spaces)")
    return name
