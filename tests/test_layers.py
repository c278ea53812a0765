"""The layers of ../shared/design/ARCHITECTURE.md, read from the source: every import of a gptquant module
(also those inside functions) must point to a lower rank or stay in its own package, and no modules may
import each other in a circle. A new top-level module needs a rank in RANKS."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gptquant"

# prefix -> (rank, group). A module may import a lower rank, or its own group at the same rank.
RANKS = {
    # 0: core infrastructure every layer may use (core modules may import each other, never in a circle)
    "gptquant.errors": (0, "core"), "gptquant.atomic": (0, "core"), "gptquant.text": (0, "core"),
    "gptquant.sqlite_store": (0, "core"), "gptquant.history": (0, "core"),
    "gptquant.ray_session": (0, "core"), "gptquant.codehash": (0, "core"),
    "gptquant.config": (0, "core"), "gptquant.parallel": (0, "core"), "gptquant.tables": (0, "core"),
    "gptquant.jsonsafe": (0, "core"), "gptquant.paths": (0, "core"), "gptquant.templates": (0, "core"),
    "gptquant.encoding": (0, "core"), "gptquant.csvrows": (0, "core"), "gptquant.names": (0, "core"),
    "gptquant.version": (0, "core"),
    # 1: the torch-free runtime (bundle.py and tokenize.py are its contract) and market data
    "gptquant.runtime": (1, "runtime"), "gptquant.bundle": (1, "runtime"), "gptquant.tokenize": (1, "runtime"),
    "gptquant.market": (1, "market"),
    # 2: features (runtime, market); analysis and backtest (market), not each other
    "gptquant.features": (2, "features"), "gptquant.analysis": (2, "analysis"), "gptquant.backtest": (2, "backtest"),
    # 3: training (may use the runtime and features.labels); BigQuant's names over backtest/market/features
    "gptquant.lm": (3, "lm"), "gptquant.bigquant": (3, "bigquant"),
    # 4: jobs (nightly)
    "gptquant.jobs": (4, "jobs"),
    # 5: the entry point, the demo and the package facade (gptquant.load_model)
    "gptquant.cli": (5, "top"), "gptquant.demo": (5, "top"), "gptquant.demo_world": (5, "top"), "gptquant": (5, "top"),  # the package __init__ only
}

# Known violations being removed by the lm split (issue 13); delete an entry when its import is gone.
ALLOWED: set[tuple[str, str]] = set()  # none left


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def imports_of(name: str, path: Path, known: dict) -> set[str]:
    """gptquant modules imported anywhere in the file (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:  # `from pkg import module` imports the module
                found.add(f"{target}.{a.name}" if f"{target}.{a.name}" in known else target)
    return {m for m in found if (m == "gptquant" or m.startswith("gptquant.")) and m != name}


def rank_of(name: str):
    for prefix in sorted(RANKS, key=len, reverse=True):
        if name == prefix or (prefix != "gptquant" and name.startswith(prefix + ".")):
            return RANKS[prefix]
    return None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_every_module_has_a_rank():
    missing = sorted(m for m in modules() if rank_of(m) is None)
    assert not missing, f"give these modules a rank in tests/test_layers.py RANKS: {missing}"


def test_no_upward_or_sideways_import():
    bad = []
    for src, targets in graph().items():
        r_src, g_src = rank_of(src) or (99, src)
        for dst in sorted(targets):
            r_dst, g_dst = rank_of(dst) or (99, dst)
            if (r_dst < r_src or g_dst == g_src) or (src, dst) in ALLOWED:
                continue
            bad.append(f"{src} (rank {r_src} {g_src}) imports {dst} (rank {r_dst} {g_dst})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_circle():
    edges = {src: {d for d in dsts if (src, d) not in ALLOWED} for src, dsts in graph().items()}
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, f"modules importing each other in a circle: {circles}"


def test_allowlist_is_current():
    g = graph()
    stale = sorted(e for e in ALLOWED if e[1] not in g.get(e[0], ()))
    assert not stale, f"these allowed violations are gone: delete them from ALLOWED in tests/test_layers.py: {stale}"


def test_the_reader_sees_function_level_and_relative_imports(tmp_path):
    # the test must catch the kind of import that made the backtest.cli <-> sweep circle: inside a function
    src = tmp_path / "gptquant" / "backtest" / "x.py"
    src.parent.mkdir(parents=True)
    src.write_text("def f():\n    from ..jobs import nightly\n    from .. import history\n    import gptquant.lm.export\n")
    known = {"gptquant.jobs.nightly": None, "gptquant.history": None, "gptquant.lm.export": None}
    assert imports_of("gptquant.backtest.x", src, known) == {"gptquant.jobs.nightly", "gptquant.history",
                                                              "gptquant.lm.export"}
