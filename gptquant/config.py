"""The one reader of the project's TOML configs (nightly, backtest, sweep).

A config is checked against a schema before anything runs, so a typo (`halflive`) is an error naming the
dotted key instead of a default silently used. Strings may use `${VAR}` and `${VAR:-default}`; paths in
a config are relative to the config file's folder (`resolve_path`).

Schema: a dict of key -> spec, where spec is ANY (any value, tables included), a type (int, float, str, bool,
list[int], dict, str | list[str], ...), a set of leaf names (any values), a dict (a nested table) or a
one-element list `[table spec]` (an array of tables, `[[name]]` in TOML). Types are checked at load by a
msgspec Struct built from the schema (forbid_unknown_fields), so `quantiles = "five"` fails in milliseconds
as `analysis.quantiles: expected int, got str` instead of deep inside a run; a value from ${VAR} is read as
the type it must have ("5" for an int).
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
    return typed(expand(config, ""), schema, path), hashlib.sha256(raw).hexdigest()[:16]


def typed(config: dict, schema: dict, path) -> dict:
    """`config` converted to the schema's types (a wrong type is an error naming its dotted key)."""
    import msgspec

    try:
        return _plain(msgspec.convert(config, _struct(schema, "Config"), strict=False))
    except msgspec.ValidationError as exc:
        what, _, where = str(exc).partition(" - at `$")
        what = what.replace("`", "")
        raise GptquantError(f"{path}: {where.strip('.`') or 'config'}: {what[:1].lower()}{what[1:]}") from None


def _struct(schema: dict, name: str):
    import msgspec

    fields = [(f"f{i}", _type(spec, f"{name}_{i}"), msgspec.UNSET) for i, spec in enumerate(schema.values())]
    return msgspec.defstruct(name, fields, rename={f"f{i}": key for i, key in enumerate(schema)},
                             forbid_unknown_fields=True)


def _type(spec, name: str):
    from typing import Any

    if spec is ANY:
        return Any
    if isinstance(spec, list):
        return list[_struct(_as_schema(spec[0]), name)]
    if isinstance(spec, (set, frozenset, dict)):
        return _struct(_as_schema(spec), name)
    return spec


def _plain(value):
    """A converted Struct back to dicts, keys the config did not set left out."""
    import msgspec

    if isinstance(value, msgspec.Struct):
        names = zip(value.__struct_fields__, value.__struct_encode_fields__)
        return {key: _plain(getattr(value, f)) for f, key in names if getattr(value, f) is not msgspec.UNSET}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _unknown(table: dict, schema, where: str, path):
    for key, value in table.items():
        name = f"{where}.{key}" if where else key
        if key not in schema:
            yield name
            continue
        spec = schema[key]
        if not isinstance(spec, (dict, set, frozenset, list)):  # ANY or a leaf type (checked by typed())
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
