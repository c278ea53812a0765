"""Resumable backtests: tonight's run continues from the last session whose inputs did not change.

A nightly backtest re-runs years of sessions although only the last few saw new news. Here a run saves its
state at checkpoints (the last sessions and every `every`-th one): the broker (cash, positions, pending
orders, T+1 lots, order log), the strategy (its attributes and backtrader's order and trade books), the
recorder's rows and a BigQuant context. Beside them it keeps a hash chain over everything the engine
shows the strategy, session by session: every instrument's line values and the panel rows.

The next run with the same strategy, parameters, rules, capital and start compares the chains. Up to the
last checkpoint where they agree a full run would do exactly what was done before, so the clock is moved
there without calling the strategy, the state is restored and only the sessions after it run. The result
equals a full run's (tests compare every frame). A strategy whose state holds something that cannot be
saved (an open file, a line object that is not one of its attributes) runs in full, with a note saying why.

Checkpoint files are pickles, so they are signed with this user's secret key (HMAC-SHA256, the key in
$GPTQUANT_CACHE/checkpoint.key) and unpickled with an allowlist (classes of backtrader, gptquant and the
strategy's module, plain data types): a file written by someone else or tampered with is not loaded and
the run is a full run.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import pickle
from pathlib import Path

import backtrader as bt
import numpy as np
from backtrader.lineiterator import LineIterator
from backtrader.lineroot import LineRoot
from backtrader.metabase import AutoInfoClass

from ..atomic import atomic_write_bytes
from ..errors import GptquantError
from .runkey import FORMAT

BACKTRADER = "1.9.78.123"  # the release whose private hooks resume moves and restores (setup.cfg pins it)
LAST = 5  # checkpoints at each of the last sessions (new news lands there) ...
EVERY = 60  # ... and every 60th session before (about a quarter: a revision further back costs little more)
_STRUCTURE = (LineRoot, bt.LineBuffer, bt.Cerebro, bt.BrokerBase, AutoInfoClass, bt.Sizer)
_REBUILT = {"_lineiterators", "_clock", "_sizer", "_owner", "_slave_analyzers", "writers", "analyzers", "observers",
            "stats", "datas", "ddatas", "dnames", "cerebro", "env", "p", "params", "plotinfo", "plotlines", "lines", "l"}


def check_backtrader() -> None:
    """Refuse to load or save checkpoints under another backtrader: resume moves its clocks and restores its
    private order and trade books, which a release may reshape without notice (a wrong result, not an error)."""
    if bt.__version__ != BACKTRADER:
        raise GptquantError(f"backtest resume is built for backtrader {BACKTRADER} (it restores backtrader's private "
                            f"state), but backtrader {bt.__version__} is installed: pip install backtrader=={BACKTRADER}, "
                            "or run the backtest without checkpoints")


class Checkpoints:
    """One backtest's checkpoint file: where to resume from, what to save, and the save/restore itself."""

    def __init__(self, path, key: str, chain: list[str], modules: tuple = ()):
        check_backtrader()
        self.path, self.key, self.chain, self.modules = Path(path), key, chain, tuple(modules)
        n = len(chain)
        self.save_at = {i for i in range(n) if i >= n - LAST or i % EVERY == EVERY - 1}
        self.saved: dict[int, tuple[str, bytes]] = {}
        self._names, self._run = None, None
        self.resume_at, self._blob, self.note = -1, None, "no checkpoints yet: full run"
        previous = self._read()
        if previous is None:
            return
        if previous.get("key") != key:
            self.note = "strategy, parameters, rules or start changed: full run"
            return
        for i in sorted(previous["saved"], reverse=True):
            link, blob = previous["saved"][i]
            if i < n and chain[i] == link:
                try:
                    _check(blob, self.modules)
                except Exception as exc:
                    self.note = f"checkpoint at session {i + 1} not used ({exc}): full run"
                    return
                self.resume_at, self._blob = i, blob
                self.saved = {j: v for j, v in previous["saved"].items() if j <= i and j in self.save_at}
                self.note = f"inputs unchanged through session {i + 1} of {n}: resumed there"
                return
        self.note = "inputs changed before the first checkpoint: full run"

    def _read(self):
        if not self.path.is_file():
            return None
        try:
            data = _loads(_verified(self.path.read_bytes()), self.modules)
        except Exception as exc:  # unreadable or refused: this run is a full run and rewrites the file
            self.note = f"checkpoint file {self.path} not used ({exc}): full run"
            return None
        return data if isinstance(data, dict) and data.get("format") == FORMAT else None

    def write(self) -> None:
        check_backtrader()
        if self.saved:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, _sign(pickle.dumps({"format": FORMAT, "key": self.key, "saved": self.saved},
                                                             protocol=pickle.HIGHEST_PROTOCOL)))

    def wrap(self, strategy: type) -> type:
        """The strategy class with its sessions up to `resume_at` replaced by clock moves, and saves after."""
        cp = self

        def _oncepost_open(strat):
            if len(strat) > cp.resume_at:
                strategy._oncepost_open(strat)

        def _oncepost(strat, dt):
            i = len(strat)  # this session's index on the grid
            if i > cp.resume_at:
                strategy._oncepost(strat, dt)
                if i in cp.save_at:
                    cp._save(strat, i)
                return
            # Jump to the checkpoint in one step: the feeds' clocks (all on one grid) move to it and the strategy's
            # lines and indicators catch up, as backtrader's Strategy._oncepost would have moved them session by
            # session (nothing else happens in those sessions: no orders exist before the restore).
            k = cp.resume_at - i + 1  # sessions covered, this one included
            for d in strat.datas:
                d._gq_clock.i += k - 1
            for indicator in strat._lineiterators[LineIterator.IndType]:
                if len(indicator._clock) > len(indicator):
                    indicator.advance(len(indicator._clock) - len(indicator))
            strat.advance(k) if strat._oldsync else strat.forward(size=k)
            j, dates = strat.lines.datetime.idx, strat.datas[0].lines.datetime.array
            strat.lines.datetime.array[j - k + 1:j + 1] = dates[cp.resume_at - k + 1:cp.resume_at + 1]
            restore(strat, cp._blob, cp._objects(strat), cp.modules)

        return type(strategy.__name__, (strategy,), {"_oncepost": _oncepost, "_oncepost_open": _oncepost_open,
                                                     "__module__": strategy.__module__})

    def _objects(self, strat) -> list:
        if self._run is None:  # the run's objects do not change during the run
            self._run = _run_objects(strat)
        return self._run

    def _save(self, strat, i):
        if self._names is None:
            self._names = {id(obj): token for token, obj in reversed(self._objects(strat))}
        try:
            self.saved[i] = (self.chain[i], capture(strat, self._names))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            self.save_at, self.saved = set(), {}
            self.note = f"state cannot be saved ({exc}): every run is a full run"


def _attrs(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if k not in _REBUILT and not isinstance(v, _STRUCTURE)}


class _Pickler(pickle.Pickler):
    """Objects of the run itself (feeds, lines, indicators, strategy, broker, context) travel as names.

    reducer_override is not called for plain numbers, strings and containers, which keeps saving cheap."""

    def __init__(self, file, names: dict):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._names = names

    def reducer_override(self, obj):
        token = self._names.get(id(obj))
        if token is not None:
            return _live, (token,)
        if isinstance(obj, (LineRoot, bt.LineBuffer)):
            raise pickle.PicklingError(f"it holds a {type(obj).__name__} that is not one of the strategy's attributes")
        return NotImplemented


_LIVE: dict = {}  # token -> object of the run being restored (set by restore() while it unpickles)


def _live(token):
    return _LIVE[token]


def _run_objects(strat) -> list[tuple[tuple, object]]:
    """(token, object) for every object of the run that saved state may point at: a new run of the same
    strategy on the same instruments builds the same ones, in the same order."""
    out = [(("strategy",), strat), (("broker",), strat.broker), (("cerebro",), strat.env)]
    for d in strat.datas:
        out.append((("data", d._name), d))
        out += [(("line", d._name, alias), line) for alias, line in zip(d.lines.getlinealiases(), d.lines.lines)]
    for kind, objs in strat._lineiterators.items():  # indicators (and observers) in the order __init__ made them
        out += [(("iter", kind, j), obj) for j, obj in enumerate(objs)]
    out += [(("attr", k), v) for k, v in vars(strat).items() if isinstance(v, LineRoot)]
    ctx = getattr(strat.params, "ctx", None)
    if ctx is not None:
        out += [(("context",), ctx), (("bardata",), ctx._data)]
    return out


def capture(strat, names: dict | None = None) -> bytes:
    """The state of a run after its current session, pickled with the run's own objects as names
    (names: id -> token from _run_objects, computed here when not given)."""
    if names is None:
        names = {id(obj): token for token, obj in reversed(_run_objects(strat))}
    rec = strat.analyzers.gptquant
    state = {"strategy": _attrs(strat), "broker": _attrs(strat.broker),
             "recorder": {"days": rec.days, "trades": rec.trades},
             "refs": (_peek(bt.OrderBase), _peek(bt.Trade))}
    ctx = getattr(strat.params, "ctx", None)
    if ctx is not None:
        state["context"] = ctx._state()
    buf = io.BytesIO()
    _Pickler(buf, names).dump(state)
    return buf.getvalue()


def restore(strat, blob: bytes, objects: list | None = None, modules: tuple = ()) -> None:
    """Put a captured state into a run whose clock stands at the captured session (modules: where the
    strategy's own classes live, allowed in the state besides backtrader's and gptquant's)."""
    global _LIVE
    _LIVE = dict(objects if objects is not None else _run_objects(strat))
    try:
        state = _loads(blob, modules or (type(strat).__module__,))
    finally:
        _LIVE = {}
    for target, attrs in ((strat, state["strategy"]), (strat.broker, state["broker"])):
        for k, v in attrs.items():
            setattr(target, k, v)
    rec = strat.analyzers.gptquant
    rec.days, rec.trades = state["recorder"]["days"], state["recorder"]["trades"]
    bt.OrderBase.refbasis, bt.Trade.refbasis = itertools.count(state["refs"][0]), itertools.count(state["refs"][1])
    ctx = getattr(strat.params, "ctx", None)
    if ctx is not None:
        ctx._restore(state["context"])


_SAFE_MODULES = ("backtrader.", "gptquant.", "collections", "datetime", "decimal", "fractions", "pandas._libs.")
_SAFE_BUILTINS = {"int", "float", "complex", "bool", "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
                  "frozenset", "slice", "range", "object"}
_SAFE_FUNCTIONS = {("copyreg", "_reconstructor"), ("gptquant.backtest.resume", "_live"), ("itertools", "count"),
                   ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                   ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                   ("numpy", "dtype"), ("numpy", "ndarray"),
                   ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
                   ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle")}


class _SafeUnpickler(pickle.Unpickler):
    """Second line of defence after the signature: only classes of backtrader, gptquant, the strategy's own
    module and plain data types, and a few known rebuild functions, can be named in a checkpoint."""

    def __init__(self, file, modules: tuple):
        super().__init__(file)
        self._modules = tuple(m for m in modules if m and m != "__main__")

    def find_class(self, module, name):
        if (module, name) in _SAFE_FUNCTIONS or (module == "builtins" and name in _SAFE_BUILTINS):
            return super().find_class(module, name)
        if module.startswith(_SAFE_MODULES) or module in self._modules:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _loads(data: bytes, modules: tuple = ()):
    return _SafeUnpickler(io.BytesIO(data), modules).load()


class _Echo(dict):
    def __missing__(self, token):
        return token


def _check(blob: bytes, modules: tuple) -> None:
    """Unpickle a saved state with the run's objects standing in as their names: refused content shows up
    before the run, not in the middle of it."""
    global _LIVE
    _LIVE = _Echo()
    try:
        _loads(blob, modules)
    finally:
        _LIVE = {}


def _signing_key() -> bytes:
    """This user's secret for checkpoint signatures ($GPTQUANT_CACHE, default ~/.cache/gptquant, mode 0600):
    a checkpoint written by someone else (a shared folder, a copied run) is not loaded."""
    import os
    import secrets

    from ..paths import cache_dir

    base = cache_dir()
    path = base / "checkpoint.key"
    if not path.is_file():
        base.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        except FileExistsError:  # another run made it first
            pass
    return path.read_bytes()


def _sign(payload: bytes) -> bytes:
    import hmac

    return hmac.new(_signing_key(), payload, hashlib.sha256).digest() + payload


def _verified(data: bytes) -> bytes:
    import hmac

    tag, payload = data[:32], data[32:]
    if not hmac.compare_digest(tag, hmac.new(_signing_key(), payload, hashlib.sha256).digest()):
        raise ValueError("signature does not match this user's key")
    return payload


def _peek(cls) -> int:
    n = next(cls.refbasis)
    cls.refbasis = itertools.count(n)
    return n


def reset_refs() -> None:
    """Order and trade numbers start at 1 in every run, so a resumed run numbers them as a full run does."""
    bt.OrderBase.refbasis, bt.Trade.refbasis = itertools.count(1), itertools.count(1)
