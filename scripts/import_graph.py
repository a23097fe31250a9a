"""gantool's import graph from the source: which module imports which (at the top of a file or
inside a function alike), its circles, and its largest modules.

    python scripts/import_graph.py            # circles and the largest modules
    python scripts/import_graph.py --edges    # every edge, one per line

tests/test_code_shape.py keeps the graph free of circles with the same functions.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``root/gantool``."""
    found = {}
    for path in sorted((root / "gantool").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, here: str, is_package: bool, modules: set[str]) -> set[str]:
    """The gantool modules one import statement brings in (``from pkg import name`` names the
    submodule where ``name`` is one, else the package)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = here.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in modules:
            found.add(sub)
        elif source in modules:
            found.add(source)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the gantool modules it imports (itself left out)."""
    files = module_files(root)
    names = set(files)
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            edges |= _imported(node, name, is_package, names)
        graph[name] = edges - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", action="store_true", help="print every edge")
    parser.add_argument("--largest", type=int, default=12, help="how many modules to list")
    args = parser.parse_args()
    graph = import_graph()
    if args.edges:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"{a} -> {b}")
        return
    found = circles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} edges, {len(found)} circles")
    for component in found:
        inner = {a: sorted(graph[a] & set(component)) for a in component}
        print("circle: " + "; ".join(f"{a} -> {', '.join(b)}" for a, b in inner.items()))
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in module_files().items()),
                   reverse=True)
    print("largest modules (lines):")
    for lines, name in sizes[:args.largest]:
        print(f"  {lines:4d}  {name}")


if __name__ == "__main__":
    main()
