"""The one reader of the project's TOML configs (nightly, backtest, sweep).

A config is checked against a schema before anything runs, so a typo (`halflive`) is an error naming the
dotted key instead of a default silently used. Strings may use `${VAR}` and `${VAR:-default}`; paths in
a config are relative to the config file's folder (`resolve_path`).

Schema: a dict of key -> spec, where spec is ANY (any value, tables included), a set of leaf names, a dict
(a nested table) or a one-element list `[table spec]` (an array of tables, `[[name]]` in TOML).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .errors import GptquantError

ANY = None
_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def load_toml(path, schema: dict, required=(), overrides: dict | None = None) -> tuple[dict, str]:
    """(config, digest): the file read, `overrides` (same shape) merged in, checked against `schema`,
    `required` dotted keys present, ${VAR} expanded. digest is a short sha256 of the bytes and overrides."""
    import tomllib

    path = Path(path)
    try:
        raw = path.read_bytes()
        config = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise GptquantError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GptquantError(f"{path}: invalid TOML: {exc}") from None
    if overrides:
        config = merge(config, overrides)
        raw += json.dumps(overrides, sort_keys=True, default=str).encode()
    unknown = list(_unknown(config, schema, "", path))
    if unknown:
        raise GptquantError(f"{path}: unknown config key(s): {', '.join(unknown)}")
    for need in required:
        if _get(config, need) is None:
            raise GptquantError(f"{path}: missing {need}")
    return expand(config, ""), hashlib.sha256(raw).hexdigest()[:16]


def _unknown(table: dict, schema, where: str, path):
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if key not in schema:
            yield name
            continue
        spec = schema[key]
        if spec is ANY:
            continue
        if isinstance(spec, list):
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise GptquantError(f"{path}: write {name} as [[{name}]] tables")
            for i, item in enumerate(value):
                yield from _unknown(item, _as_schema(spec[0]), f"{name}[{i}]", path)
        elif not isinstance(value, dict):
            raise GptquantError(f"{path}: {name} must be a table ([{name}]), got {value!r}")
        else:
            yield from _unknown(value, _as_schema(spec), name, path)


def _as_schema(spec) -> dict:
    return spec if isinstance(spec, dict) else dict.fromkeys(spec, ANY)


def _get(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def merge(base: dict, extra: dict) -> dict:
    """`extra` over `base`, tables merged key by key."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def expand(value, where: str = ""):
    """${VAR} / ${VAR:-default} in every string; an unset VAR without default is an error naming the key."""
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m):
        name, default = m.group(1), m.group(2)
        if os.environ.get(name, "") != "":
            return os.environ[name]
        if default is None:
            raise GptquantError(f"config {where}: environment variable {name} is not set "
                                f"(write ${{{name}:-default}} for a default)")
        return default

    return _ENV.sub(sub, value)


def resolve_path(base, value) -> Path:
    """`value` (~ expanded) if absolute, else relative to `base` (the config's folder, or a root set in it)."""
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else Path(base) / p
