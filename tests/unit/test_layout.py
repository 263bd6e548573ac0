"""The code's shape: the library's imports run one way (no cycle, function-level imports included),
and no module in layers/, devstack/ or deploy/ is longer than a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "ciflow" / "ciflow"
MAX_LINES = 600

# Modules over MAX_LINES waiting to be split by concern (path → what it holds). Only ever shrinks;
# empty since the media emulator was split.
OVER_LIMIT: dict[str, str] = {}


# --- the import graph -----------------------------------------------------------------------------

Edge = tuple[str, str, str]   # importer, imported, "path:line"


def module_names(package: Path) -> dict[str, Path]:
    """`ciflow.operations.status` → its file, for every module of the package (sub-packages too)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> Optional[str]:
    if not node.level:
        return node.module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(package: Path) -> list[Edge]:
    """Every import of a module of `package` by another, wherever it sits (top level, function, `if`)."""
    modules = module_names(package)
    root = package.name
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                if base is None:
                    continue
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                # `import a.b.c` runs a, a.b and a.b.c: the innermost module of ours is the one that matters
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and (target == root or target.startswith(root + ".")):
                    where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno}"
                    edges.append((name, target, where))
    return edges


def find_cycle(edges: list[Edge]) -> Optional[list[Edge]]:
    """One import cycle as the edges that make it, or None."""
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e[0], []).append(e)
    state: dict[str, int] = {}      # 1: on the current path, 2: finished
    path: list[Edge] = []

    def visit(node: str) -> Optional[list[Edge]]:
        state[node] = 1
        for e in graph.get(node, []):
            target = e[1]
            if state.get(target) == 1:
                start = next(i for i, p in enumerate(path) if p[0] == target) if target != node else len(path)
                return path[start:] + [e]
            if target not in state:
                path.append(e)
                found = visit(target)
                if found:
                    return found
                path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _describe(cycle: list[Edge]) -> str:
    return "\n  ".join(f"{a} imports {b} ({where})" for a, b, where in cycle)


def test_the_library_has_no_import_cycle() -> None:
    edges = import_edges(LIBRARY)
    assert len({e[0] for e in edges}) > 10, "the import graph looks empty: is the walker broken?"
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle in the library:\n  " + _describe(cycle or [])


def test_settings_sit_below_the_rules() -> None:
    edges = import_edges(LIBRARY)
    assert ("ciflow.rules", "ciflow.settings") in {(a, b) for a, b, _ in edges}
    assert not [e for e in edges if e[0] == "ciflow.settings" and e[1] == "ciflow.rules"]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "pkg"
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text, encoding="utf-8")
    return pkg


@pytest.mark.parametrize("files", [
    # a function-level import closes the loop
    {"__init__.py": "", "a.py": "from . import b\n", "b.py": "def f():\n    from .a import x\n"},
    # through a sub-package, with a relative import two levels up
    {"__init__.py": "", "a.py": "from .sub.c import y\n", "sub/__init__.py": "",
     "sub/c.py": "if True:\n    from ..a import z\n"},
    # absolute imports
    {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "from pkg import a\n"},
])
def test_the_cycle_check_finds_cycles(tmp_path: Path, files: dict[str, str]) -> None:
    edges = import_edges(_package(tmp_path, files))
    cycle = find_cycle(edges)
    assert cycle is not None
    assert cycle[0][0] == cycle[-1][1]


def test_the_cycle_check_accepts_a_one_way_graph(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {"__init__.py": "", "a.py": "from . import b\nfrom .sub import c\n",
                              "b.py": "def f():\n    from .sub.c import x\n", "sub/__init__.py": "",
                              "sub/c.py": "import json\n"})
    edges = import_edges(pkg)
    assert {(a, b) for a, b, _ in edges} == {("pkg.a", "pkg.b"), ("pkg.a", "pkg.sub.c"), ("pkg.b", "pkg.sub.c")}
    assert find_cycle(edges) is None


# --- module length --------------------------------------------------------------------------------

def _modules() -> list[Path]:
    return sorted(p for top in ("layers", "devstack", "deploy") for p in (ROOT / top).rglob("*.py")
                  if "__pycache__" not in p.parts and "node_modules" not in p.parts)


def test_no_module_is_over_the_limit() -> None:
    over = {}
    for path in _modules():
        n = len(path.read_text(encoding="utf-8").splitlines())
        rel = path.relative_to(ROOT).as_posix()
        if n > MAX_LINES and rel not in OVER_LIMIT:
            over[rel] = n
    assert not over, f"modules over {MAX_LINES} lines (split them by concern): {over}"


def test_the_allow_list_is_honest() -> None:
    # An entry that is gone or back under the limit comes off the list.
    for rel in OVER_LIMIT:
        path = ROOT / rel
        assert path.exists(), f"{rel} no longer exists: remove it from OVER_LIMIT"
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert n > MAX_LINES, f"{rel} is {n} lines now: remove it from OVER_LIMIT"
