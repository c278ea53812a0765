"""Ray is an optional extra: one place that imports it, joins a running Ray (the caller's, or the cluster
at `address`) or starts a local one, and shuts down only what it started. No core module imports Ray."""
from __future__ import annotations

from contextlib import contextmanager

from .errors import GptquantError, MissingExtra


@contextmanager
def ray_session(num_cpus: int, address: str | None = None, what: str = "--engine ray"):
    """Yield the `ray` module with a connected runtime."""
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray", "ray", what) from None
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     **({} if address else {"num_cpus": num_cpus}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise GptquantError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
