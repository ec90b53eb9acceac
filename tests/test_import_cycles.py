"""No import cycles between the modules of the packages: imports go one way.

Both module-level and function-local imports count (a function-local import only hides a cycle). A
package's ``__init__`` loading before its submodules is not an edge; ``from pkg import name`` is an edge
to ``pkg`` only when ``name`` is not a submodule.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("xlmr", "xlmr_torch", "xlmr_tf", "xlmr_flax", "conversion", "xlmr_demo")
# Known cycles, each a sorted tuple of modules; being fixed elsewhere. Listed so that a new one fails.
KNOWN: set[tuple[str, str]] = set()


def _modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The project modules an import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        package = module.split(".")
        if modules[module].name != "__init__.py":
            package.pop()
        if node.level:
            base = package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
            prefix = ".".join(base)
        else:
            prefix = node.module
        subs = [f"{prefix}.{alias.name}" for alias in node.names]
        names = [s for s in subs if s in modules] + ([prefix] if any(s not in modules for s in subs) else [])
    out = set()
    for name in names:
        while name and name not in modules:  # a.b.attr -> a.b
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def _cycles(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> set[tuple[str, ...]]:
    modules = _modules(root, packages)
    edges = {
        m: set().union(
            *(
                _imported(m, node, modules)
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, (ast.Import, ast.ImportFrom))
            )
        )
        for m, path in modules.items()
    }
    # Strongly connected components (Tarjan) of more than one module are the cycles.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.add(tuple(sorted(component)))

    for v in modules:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles_but_the_known_ones():
    found = _cycles()
    assert found <= KNOWN, f"import cycles: {sorted(found - KNOWN)}"


def test_the_checker_sees_a_cycle(tmp_path):
    package = tmp_path / "xlmr_demo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from .a import g\n")
    assert _cycles(tmp_path, ("xlmr_demo",)) == {("xlmr_demo.a", "xlmr_demo.b")}
