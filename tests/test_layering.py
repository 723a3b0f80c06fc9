"""The package layout is a promise: imports go one way and the runtime import graph has no cycle.

Layers, lowest first: ``errors`` < ``store`` < ``tree`` < ``remote``, ``oci``, ``composefs`` <
``sysroot`` < ``cli``.  A module may import its own layer and the ones below it; a type-only
import (under ``if TYPE_CHECKING:``) must respect the layers too.  The runtime graph (module-level
and function-level imports, type-only ones left out) must be acyclic, so no module needs another
that needs it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pyostree

SRC = Path(pyostree.__file__).parent

# the package root (version constants, the lazy public API) sits on top: it may name anything
RANK = {"errors": 0, "store": 1, "tree": 2, "remote": 3, "oci": 3, "composefs": 3,
        "sysroot": 4, "porcelain": 5, "cli": 6, "__main__": 7}
# layers of one rank that must not import each other
PEERS_APART = {("remote", "oci"), ("oci", "remote"), ("remote", "composefs"),
               ("composefs", "remote"), ("oci", "composefs"), ("composefs", "oci")}


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _imports(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported module, runtime?) for every pyostree import in *path*."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for n in node.body:
                visit(n, False)
            for n in node.orelse:
                visit(n, runtime)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "pyostree":
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    found.append((sub if sub in mods else mod, runtime))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "pyostree":
                    found.append((a.name, runtime))
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(tree, True)
    return [(m, rt) for m, rt in found if m != name]


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_go_down_the_layers() -> None:
    mods = _modules()
    bad = []
    for name, path in mods.items():
        src = _layer(name)
        if src == "":
            continue
        for dep, _runtime in _imports(name, path, mods):
            dst = _layer(dep)
            if dst in ("", src):
                if dst == "" and dep != "pyostree":
                    bad.append(f"{name} -> {dep} (unknown module)")
                continue
            if dst not in RANK or src not in RANK:
                bad.append(f"{name} -> {dep} (layer not in the table)")
            elif RANK[dst] > RANK[src] or (src, dst) in PEERS_APART or RANK[dst] == RANK[src]:
                bad.append(f"{name} -> {dep}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_runtime_import_cycle() -> None:
    mods = _modules()
    graph = {n: sorted({d for d, rt in _imports(n, p, mods) if rt and d in mods}) for n, p in mods.items()}
    # a package's __init__ that re-exports its modules is not a cycle with them
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in graph.get(n, []):
            if n.startswith(d + ".") or d.startswith(n + "."):
                continue
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d):], d]))
            elif d not in state:
                dfs(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_layout_has_the_named_packages() -> None:
    for pkg in ("store", "tree", "remote", "oci", "sysroot", "cli"):
        init = SRC / pkg / "__init__.py"
        assert init.is_file(), pkg
        assert ast.get_docstring(ast.parse(init.read_text())), f"{pkg}/__init__.py needs a docstring"
    assert (SRC / "py.typed").is_file()
