"""Ray is an optional extra: one place that imports it, connects the way Ray users expect, and shuts down
only what it started. No core module imports Ray.

Where it connects: a Ray already initialised in this process; else `address` (`--address`, a config's
`address`); else `RAY_ADDRESS` (what `ray job submit` sets); else the cluster `ray start --head` started on
this machine (the address it records, as a bare `ray.init()` finds it); else a local Ray started for the run. When joining a
cluster nothing is asked of the cluster as a whole: each actor or task asks for its own CPU.
`ray://host:10001` needs `ray[client]` (in the `ray` extra). A host:port where nothing listens fails in
seconds, before ray.init (which would retry for minutes).
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

from .errors import GptquantError, MissingExtra

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_OURS = re.compile(r"^gptquant\.errors\.\w+: (.*)$")


def one_line(text) -> str:
    """A message as one plain line: no ANSI colour, no traceback (its last non-empty line is the error)."""
    lines = [ln.strip() for ln in _ANSI.sub("", str(text)).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@contextmanager
def ray_session(num_cpus: int, address: str | None = None, what: str = "--engine ray"):
    """Yield the `ray` module with a connected runtime; `num_cpus` sizes only a local Ray started here."""
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray", "ray", what) from None
    started = False
    if not ray.is_initialized():
        _connect(ray, num_cpus, address or os.environ.get("RAY_ADDRESS") or None)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _connect(ray, num_cpus: int, address: str | None) -> None:
    quiet = dict(log_to_driver=False, logging_level="ERROR")
    if address is None:
        running = _started_cluster(ray)
        if running and _unreachable(running) is None:  # ray.init() joins it itself (with its token auth, as
            try:                                        # Ray does); a crashed cluster's address is ignored
                ray.init(**quiet)
            except Exception as exc:
                raise GptquantError(f"cannot reach the Ray cluster started on this machine at {running} (the address "
                                    f"`ray start` left): {type(exc).__name__}: {one_line(exc)}") from None
            return
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)  # not a stale address
        except Exception as exc:  # Ray's own reason, whatever it raises
            raise GptquantError(f"cannot start a local Ray: {type(exc).__name__}: {one_line(exc)}") from None
        return
    _probe(address, f"the Ray cluster at {address}")
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:
        hint = " (ray:// needs pip install 'ray[client]')" if address.startswith("ray://") else ""
        raise GptquantError(f"cannot reach the Ray cluster at {address}: {type(exc).__name__}: {one_line(exc)}{hint}") \
            from None


def _probe(address: str, what: str) -> None:
    """Fail in seconds when nothing listens at a host:port address: ray.init would retry for minutes
    (20 attempts of up to 40 s each in Ray 2.60) before giving up. "auto" and other forms pass unchecked."""
    refused = _unreachable(address)
    if refused is not None:
        raise GptquantError(f"cannot reach {what}: nothing answers there ({refused}); is the cluster running, and "
                            "is this its address (`ray start --head` prints it; the default port is 6379)?")


def _unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why a TCP connection to the address's host:port fails, or None (it connects, or is not host:port)."""
    import socket

    host, _, port = address.removeprefix("ray://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def _started_cluster(ray) -> str | None:
    """The address the last `ray start --head` on this machine recorded, if any. (Not Ray's address "auto":
    that also joins any Ray it finds running, e.g. another program's private one.)"""
    try:
        return ray._private.utils.read_ray_address()
    except Exception:  # a Ray without this helper: behave as if no cluster was started
        return None


def check_room(ray, workers: int, wait_s: float = 10.0) -> None:
    """Refuse `workers` one-CPU actors the cluster cannot place (Ray would wait for them forever). CPUs of
    actors that just ended come back asynchronously: wait up to `wait_s` for them first."""
    import time

    deadline = time.monotonic() + (wait_s if int(ray.cluster_resources().get("CPU", 0)) >= workers else 0)
    while (free := int(ray.available_resources().get("CPU", 0))) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    if workers > free:
        total = int(ray.cluster_resources().get("CPU", 0))
        raise GptquantError(f"--workers {workers} needs {workers} CPUs but the Ray cluster has {free} free "
                            f"(of {total}); use --workers {max(free, 1)} or add nodes")


def log_hint(ray) -> str:
    """Where a failed worker's traceback is: the session's log folder on the node that ran it."""
    try:
        node = ray._private.worker.global_worker.node
        return f"{node.get_session_dir_path()}/logs"
    except Exception:  # a ray:// client has no local node
        return "the Ray session's logs folder on the worker's node (/tmp/ray/session_latest/logs)"


def worker_failure(ray, exc, what: str) -> GptquantError:
    """A Ray task/actor error as one plain GptquantError line, with the worker log's place."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, GptquantError):
        return GptquantError(one_line(cause))
    ours = _OURS.match(one_line(exc))  # an actor whose __init__ raised: only its traceback's text comes back
    if ours:
        return GptquantError(ours.group(1))
    detail = f"{type(cause).__name__}: {one_line(cause)}" if cause is not None else one_line(exc)
    return GptquantError(f"a Ray {what} worker failed: {detail} (worker logs: {log_hint(ray)})")


def check_version(driver_version: str) -> None:
    """Worker side: refuse to run when this node's gptquant differs from the driver's."""
    from .version import __version__

    if __version__ != driver_version:
        raise GptquantError(f"this Ray worker runs gptquant {__version__}, the driver {driver_version}: "
                            "install the same gptquant on every node")
