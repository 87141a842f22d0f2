"""The package's shape, kept: no import cycle between its modules or its folders, no module far over 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "json_workflow"
MAX_LINES = 330  # "about 300": a module you can hold in your head


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules `path` imports (TYPE_CHECKING imports included: a cycle there is one too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("json_workflow"):
            named = [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(name for name in named if name in known)  # `from package import submodule`
            if node.module in known and any(name not in known for name in named):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    known = modules()
    edges = {module: imports(path, known) for module, path in known.items()}
    assert cycles(edges) == []


def folder(module: str) -> str:
    """A module's folder (`json_workflow.delivery`), or the module itself at the package's top."""
    return ".".join(module.split(".")[:2])


def folder_edges() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {folder(module): set() for module in known}
    for module, path in known.items():
        edges[folder(module)].update(folder(other) for other in imports(path, known) if folder(other) != folder(module))
    return edges


def test_folders_import_each_other_one_way_only():
    """intake -> routing -> delivery -> store -> reporting: no folder reaches back into one that uses it."""
    assert cycles(folder_edges()) == []


def test_the_configuration_uses_routing_and_routing_never_the_configuration():
    """The configuration is built from routing's rule model; the router is handed the rules and folders."""
    edges = folder_edges()
    assert "json_workflow.routing" in edges["json_workflow.config"]
    assert "json_workflow.config" not in edges["json_workflow.routing"]
    assert "json_workflow.settings" not in edges["json_workflow.routing"]


def test_intake_and_delivery_share_the_disk_helpers_below_both():
    edges = folder_edges()
    assert "json_workflow.delivery" not in edges["json_workflow.intake"]
    assert "json_workflow.durable" in edges["json_workflow.intake"] & edges["json_workflow.delivery"]
    assert edges["json_workflow.durable"] <= {"json_workflow.errors", "json_workflow.names"}


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_far_over_300_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
