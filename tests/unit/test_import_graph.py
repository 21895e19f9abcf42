"""No import cycles in heterolora/, service/ and worker/, counting every import at any depth
(inside functions and TYPE_CHECKING blocks too): a cycle hidden in a function is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("heterolora", "service", "worker")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the first-party packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _reexports(modules: dict[str, Path]) -> dict[str, dict[str, str]]:
    """For each package __init__: name -> the submodule it re-exports that name from."""
    out: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        if path.name != "__init__.py":
            continue
        table = out.setdefault(name, {})
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(node, name, True)
                if source.startswith(name + ".") and source in modules:
                    for alias in node.names:
                        table[alias.asname or alias.name] = source
    return out


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    reexports = _reexports(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, name, is_package)
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:  # from package import submodule
                        targets.append(f"{source}.{alias.name}")
                    elif source == name:  # a package importing its own submodules' names
                        continue
                    else:  # a name re-exported by a package resolves to the module that defines it
                        targets.append(reexports.get(source, {}).get(alias.name, source))
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "heterolora.planner" in graph["heterolora.cli.plan"]  # imported inside plan_cmd
    assert "heterolora.proxies.grad_norm" in graph["heterolora.proxies"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
