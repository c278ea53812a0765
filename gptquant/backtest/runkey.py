"""What makes two backtest runs the same, so one may continue the other (gptquant.backtest.resume).

`run_key` covers what a run is: the strategy's code (its module and every project module it imports),
parameters, rules, capital, start and the installed gptquant's own code. `session_chain` covers what it
sees: a hash chain over every session's line values and panel rows, so a change in the prices, the panel
(and so the news or the bundle that made it) resumes from the last session before the change.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

FORMAT = 1  # of the checkpoint files; part of the key


def session_chain(dates, block: np.ndarray, names: list[str], panel=None) -> list[str]:
    """Hash chain over the sessions: link i covers every input the strategy can see up to session i.

    block is session x instrument x line; panel ((datetime, instrument)-sorted rows) adds the panel rows of
    each session when the strategy reads them apart from the lines.
    """
    chain, h = [], hashlib.sha1(repr(list(names)).encode()).digest()
    bounds = None
    if panel is not None and len(panel):
        at = panel.index.get_level_values("datetime").values
        bounds = np.searchsorted(at, np.asarray(dates, dtype=at.dtype), side="left"), np.searchsorted(
            at, np.asarray(dates, dtype=at.dtype), side="right")
        values = np.ascontiguousarray(panel.to_numpy(dtype=float))
        codes = panel.index.get_level_values("instrument").astype(str).to_numpy()
        h = hashlib.sha1(h + repr(list(panel.columns)).encode()).digest()
    for i, day in enumerate(dates):
        d = hashlib.sha1(h)
        d.update(str(day).encode())
        d.update(np.ascontiguousarray(block[i]).tobytes())
        if bounds is not None:
            a, b = bounds[0][i], bounds[1][i]
            d.update("\0".join(codes[a:b]).encode())
            d.update(values[a:b].tobytes())
        h = d.digest()
        chain.append(h.hex())
    return chain


def source_of(obj) -> str | None:
    """The code a strategy class or callback runs (part of the key): a hash of the source of the module that
    defines it and of every project module that module imports, transitively (gptquant.codehash), so
    editing a helper module forces a full run; None when it cannot be read (then no resume)."""
    import inspect
    import sys

    from ..codehash import sources_hash

    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    path = getattr(module, "__file__", None)
    if path and Path(path).is_file():
        return sources_hash(path)
    try:
        return inspect.getsource(module) if module is not None else inspect.getsource(obj)
    except (OSError, TypeError):
        return None


def run_key(**parts) -> str | None:
    """What must be equal for two runs to share history: strategy source (with the project modules it
    imports), parameters, rules, capital, start and the installed gptquant's own code; None when the
    strategy's source is unknown. Prices, panel and bundle are in the session chain: a change there
    resumes from the last session before it, never from a stale one."""
    from ..codehash import package_hash

    if parts.get("strategy") is None:
        return None
    parts["engine"] = (package_hash(), FORMAT)
    return hashlib.sha256(pickle.dumps(sorted((k, repr(v)) for k, v in parts.items()))).hexdigest()[:24]
