"""HTML reports rendered from the package's Jinja2 templates with autoescape on: every value from data
(headlines, names, columns, errors) is escaped by the template engine, so a new field cannot be forgotten.

Templates live beside this file and are read with importlib.resources (they work from a wheel or a zip).
Jinja2 is imported only when a report is rendered.
"""
from __future__ import annotations

import math
import numbers
from functools import lru_cache
from importlib import resources

MISSING = "–"


def num(value, spec: str = ".4f") -> str:
    """A number formatted with `spec`; None, NaN and inf as "–"; anything else as its text."""
    if value is None:
        return MISSING
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return format(float(value), spec) if math.isfinite(value) else MISSING
    return str(value)


def cell(value) -> str:
    """A table cell: integers as they are (counts, sizes), other numbers as num()."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    return num(value)


def frame(df, index: bool = True) -> dict:
    """A DataFrame as {"head": [...], "rows": [[...]]} for the templates' table macro (index levels first)."""
    head = ([str(n or "") for n in df.index.names] if index else []) + [str(c) for c in df.columns]
    rows = []
    for key, values in zip(df.index, df.itertuples(index=False, name=None)):
        keys = (list(key) if isinstance(key, tuple) else [key]) if index else []
        rows.append(keys + list(values))
    return {"head": head, "rows": rows}


def _source(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FunctionLoader(_source), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = num
    env.filters["cell"] = cell
    return env


def render(name: str, **context) -> str:
    """Render the package template `name` (e.g. "run_report.html") with `context`."""
    return _env().get_template(name).render(**context)
