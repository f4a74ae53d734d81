"""No import cycles inside `conformance/`: every import of a `conformance.*` module counts, at module level and
inside functions alike (a function-level import only postpones a cycle to the first call).

Read with `ast`, nothing is imported. `from conformance.report import sign` is an edge to
`conformance.report.sign` (a module), `from conformance.cloud import Cloud` an edge to `conformance.cloud`.
Importing a module also runs its packages' `__init__`, but those hold no imports of the suite (asserted below),
so they are left out of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "conformance"
PACKAGE = "conformance"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    """The module an ImportFrom names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """{imported conformance module: line of its first import} for every import anywhere in the file."""
    found: dict[str, int] = {}
    tree = ast.parse(path.read_text(), filename=str(path))

    def add(target: str, line: int) -> None:
        # The longest known module the dotted name starts with (`conformance.cloud.Cloud` -> conformance.cloud).
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and target != PACKAGE:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name, path.name == "__init__.py")
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in known else source, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, component) for component in components]


def _one_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph.get(node, {})):
            if target == start:
                return paths[node] + [start]
            if target in members and target not in paths:
                paths[target] = paths[node] + [target]
                queue.append(target)
    return component  # not reached: a strongly connected component has a cycle through every member


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "import cycle: " + " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(describe(graph, cycle) for cycle in cycles)


def test_the_plugins_parts_import_neither_each_other_nor_the_main_part():
    """The parts share conformance.state instead; below them, only the checks use a part (the burst's statsd
    progress callback), and nothing imports the main part."""
    graph = import_graph()
    parts = {name for name in graph if name.startswith(PACKAGE + ".parts.")}
    assert parts, "no conformance.parts.* found"
    for part in sorted(parts):
        assert not set(graph[part]) & (parts | {PACKAGE + ".plugin"}), f"{part} imports {sorted(graph[part])}"
    users = {name for name, imported in graph.items() if set(imported) & parts and name not in parts}
    assert all(name.startswith(PACKAGE + ".checks.") for name in users), sorted(users)
    assert not [name for name, imported in graph.items() if PACKAGE + ".plugin" in imported]


# docs/ARCHITECTURE.md's "Who imports whom", top to bottom: a module imports from its own layer or those below.
LAYERS = (
    ("entry points", ("plugin", "checks", "__main__", "cleanup", "report.cli", "fleet")),
    ("plugin parts", ("parts",)),
    ("shared state", ("state",)),
    ("what checks use", ("nodes", "burst", "images", "probe", "progress", "report", "metrics")),
    ("resources", ("resources",)),
    ("cloud layer", ("cloud",)),
    (
        "base",
        ("results", "profiles", "flavors", "tls", "interrupt", "redact", "errors", "requirements", "report.layout"),
    ),
)


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix naming `module` (or its package)."""
    name = module.removeprefix(PACKAGE + ".")
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if name == prefix or name.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of LAYERS (docs/ARCHITECTURE.md): add it"
    return max(matches)[1]


def test_no_import_points_upward():
    graph = import_graph()
    upward = [
        f"{source} ({LAYERS[layer_of(source)][0]}, line {line}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for source, imported in sorted(graph.items())
        if source != PACKAGE
        for target, line in sorted(imported.items())
        if layer_of(target) < layer_of(source)
    ]
    assert not upward, "\n".join(upward)


def test_packages_init_import_nothing_of_the_suite():
    """What lets the graph above leave packages out: importing a submodule runs no other suite module."""
    graph = import_graph()
    inits = {name: graph[name] for name, path in modules().items() if path.name == "__init__.py"}
    assert all(not imported for imported in inits.values()), inits


def test_the_walk_sees_function_level_imports_and_names_the_cycle(tmp_path):
    # The finder itself, on a made-up graph: a two-module cycle and a longer one, each named with its lines.
    graph = {"a": {"b": 3}, "b": {"a": 7}, "c": {"d": 1}, "d": {"e": 2}, "e": {"c": 5}, "f": {"a": 1}}
    cycles = find_cycles(graph)
    assert sorted(cycles) == [["a", "b", "a"], ["c", "d", "e", "c"]]
    assert describe(graph, ["a", "b", "a"]) == "import cycle: a -> b -> a\n    a (line 3) -> b\n    b (line 7) -> a"
    # And the reader: an import inside a function is an edge like one at the top.
    source = tmp_path / "conformance"
    source.mkdir()
    (source / "one.py").write_text("def later():\n    from conformance import two\n")
    known = {"conformance.one": source / "one.py", "conformance.two": source / "two.py"}
    assert imports_of("conformance.one", source / "one.py", known) == {"conformance.two": 2}
