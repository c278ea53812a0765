"""Hashes of source code, for keys that must change when the code that produced a result changes.

A resumed backtest or a cached result is only right if the code is the same: the installed gptquant's
own modules (an upgrade, or an edit of a checkout) and the project modules a strategy imports.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """sha256 hex of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def package_hash() -> str:
    """sha256 over every .py file of the installed gptquant package (relative path and bytes)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:24]


def project_sources(path) -> dict[str, bytes]:
    """{path: source} of the module file at `path` and of every module it imports, transitively, that is
    project code: neither the standard library, an installed package, nor gptquant (see package_hash).

    Imports are read from the source (ast, also those inside functions), not executed: `import helpers`
    next to the strategy, `from . import x` in a package and `from pkg.sub import y` are followed."""
    import ast

    todo, seen = [Path(path).resolve()], {}
    while todo:
        p = todo.pop()
        if p in seen or not p.is_file():
            continue
        seen[p] = p.read_bytes()
        try:
            tree = ast.parse(seen[p])
        except (SyntaxError, ValueError):
            continue  # running it fails anyway; its bytes are in the key
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [(a.name, 0) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                names = [(mod, node.level)] + [(f"{mod}.{a.name}" if mod else a.name, node.level) for a in node.names]
            else:
                continue
            for name, level in names:
                found = _locate(name, p, level)
                if found is not None and _is_project(found):
                    todo.append(found)
    return {str(k): seen[k] for k in sorted(seen)}


def module_file(spec: str, near) -> Path | None:
    """The file of a strategy given as a path ending in .py (relative to `near`) or a dotted module name."""
    if spec.endswith(".py"):
        p = Path(spec).expanduser()
        p = p if p.is_absolute() else Path(near) / p
        return p.resolve() if p.is_file() else None
    return _locate(spec, Path(near) / "_", 0)


def sources_hash(path) -> str:
    """sha256 of the contents of project_sources(path) (paths left out: a moved checkout keeps its key)."""
    h = hashlib.sha256()
    for source in sorted(hashlib.sha256(s).hexdigest() for s in project_sources(path).values()):
        h.update(source.encode())
    return h.hexdigest()[:24]


def _file_of(folder: Path, parts: list[str]) -> Path | None:
    if not parts:
        init = folder / "__init__.py"
        return init if init.is_file() else None
    target = folder.joinpath(*parts)
    for candidate in (target.with_name(target.name + ".py"), target / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve()
    return None


@lru_cache(maxsize=4096)
def _search_path(top: str) -> tuple[Path, ...]:
    """Folders where a top-level module `top` lives, from its spec (the module itself is not imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError, AttributeError):
        return ()
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return ()
    if spec.submodule_search_locations:
        return tuple(Path(p).parent for p in spec.submodule_search_locations)
    return (Path(spec.origin).parent,)


def _locate(name: str, importer: Path, level: int) -> Path | None:
    parts = [x for x in name.split(".") if x]
    if level:
        base = importer.parent
        for _ in range(level - 1):
            base = base.parent
        return _file_of(base, parts)
    if not parts:
        return None
    for folder in (importer.parent, *_search_path(parts[0])):  # a module beside the importer first
        found = _file_of(folder, parts)
        if found is not None:
            return found
    return None


@lru_cache(maxsize=1)
def _not_project() -> tuple[Path, ...]:
    import sysconfig

    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(Path(r).resolve() for r in roots) + (Path(__file__).resolve().parent,)


def _is_project(path: Path) -> bool:
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return False
    return not any(path.is_relative_to(root) for root in _not_project())
