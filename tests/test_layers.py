"""The package's layers, held against its imports (no server needed).

``regime_io`` is laid out in floors (docs/architecture.md). Each module may import only from
its own floor or the floors below; the runtime import graph has no cycle; imports placed
inside functions are counted like any other (they are an arrow all the same) and kept for
optional third-party dependencies only; no module grows past 900 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "regime_io"

# Bottom to top. A module belongs to the first layer whose prefix matches its dotted name.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("declarations", ("errors", "types", "tables", "config")),
    ("primitives", ("_frames", "_sql")),
    ("connections", ("_conn",)),
    ("tiers", ("_tiers",)),
    ("schema", ("_schema",)),
    ("read", ("_read",)),
    ("write", ("_write",)),
    ("public", ("_facade", "_render", "database", "integration", "plots", "synthetic", "files", "demo", "server", "cli",
                "__init__", "__main__")),
]
MAX_INNER_IMPORTS = 10
MAX_MODULE_LINES = 900


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"regime_io.{module} belongs to no layer: add it to LAYERS in {__file__}")


def _target(module: str, level: int, name: str | None, alias: str | None) -> str | None:
    """The package module an import statement names, or None for a third-party import."""
    if level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (level - 1)]
        full = ".".join([*base, *(name.split(".") if name else [])])
    elif name and (name == "regime_io" or name.startswith("regime_io.")):
        full = name.partition(".")[2]
    else:
        return None
    for candidate in (f"{full}.{alias}".strip(".") if alias else None, full):
        if candidate in MODULES:
            return candidate
        if candidate is not None and candidate + ".__init__" in MODULES:
            return candidate + ".__init__"
    return full or "__init__"


def _imports() -> list[tuple[str, str, int, bool]]:
    """(importer, imported, line, inside a function) for every package-internal import."""
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only: set[int] = set()
        in_function: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                typing_only.update(id(n) for n in ast.walk(node))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                in_function.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str | None] = []
            if isinstance(node, ast.ImportFrom):
                targets = [_target(module, node.level, node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [_target(module, 0, a.name, None) for a in node.names]
            for target in targets:
                if target is not None and target != module:
                    found.append((module, target, node.lineno, id(node) in in_function))
    return found


IMPORTS = _imports()


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_imports_point_down() -> None:
    upward = [f"regime_io.{a} ({LAYERS[_layer(a)][0]}) imports regime_io.{b} ({LAYERS[_layer(b)][0]}) "
              f"at line {line}" for a, b, line, _ in IMPORTS if _layer(b) > _layer(a)]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b, _, _ in IMPORTS:
        if b in graph:
            graph[a].add(b)
    # Tarjan's strongly connected components: any component of 2+ modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_inside_functions_are_rare() -> None:
    inner = [f"regime_io.{a}:{line} imports regime_io.{b}" for a, b, line, inside in IMPORTS if inside]
    assert len(inner) <= MAX_INNER_IMPORTS, "imports of the package inside functions:\n" + "\n".join(inner)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_length(module: str) -> None:
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"regime_io.{module} has {lines} lines (at most {MAX_MODULE_LINES})"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    # The checker itself can fail: a tier module importing a reader is an upward arrow.
    assert _layer("_tiers.router") < _layer("_read.readers")
    assert _target("_tiers.router", 2, "_read.readers", "get_market_data") == "_read.readers"
    assert _target("_tiers.router", 1, None, "sealed_read") == "_tiers.sealed_read"
    assert _target("integration", 0, "regime_io._read", "readers") == "_read.readers"
    assert _target("integration", 0, "polars", None) is None
