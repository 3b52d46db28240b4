"""Dependencies point one way: read every module's imports from its source (ast,
nothing is run) and check the rules of DESIGN.md and issue 10.

Imports inside functions count too: a lazy import is still a dependency, and is
the usual way a cycle is hidden.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_APPS = ["devices", "commands", "analytics", "homepot"]
AGENT_PACKAGE = ROOT / "agent_client" / "homepot_agent"


def _modules(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package (no migrations)."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported_names(path: Path, module: str) -> Iterator[str]:
    """Every dotted name the module imports, `from a import b` as both a and a.b."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join([*parts[:keep], *([node.module] if node.module else [])])


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of `modules` it imports (submodule names resolved)."""
    graph = {}
    for module, path in modules.items():
        targets = {name for name in _imported_names(path, module) if name in modules}
        graph[module] = targets - {module}
    return graph


def _all_imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {module: set(_imported_names(path, module)) for module, path in modules.items()}


def _server_modules() -> dict[str, Path]:
    found = {}
    for app in SERVER_APPS:
        found.update(_modules(ROOT / app, app))
    found["celery_app"] = ROOT / "celery_app.py"
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def app_graph() -> dict[str, set[str]]:
    """Which server app imports which (the picture in issue 10's closing note)."""
    apps: dict[str, set[str]] = {app: set() for app in SERVER_APPS}
    for module, targets in _graph(_server_modules()).items():
        if _top(module) in apps:
            apps[_top(module)] |= {_top(t) for t in targets if _top(t) != _top(module)}
    return apps


def _pairs_importing_each_other(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted(
        (a, b) for a, targets in graph.items() for b in targets if a < b and a in graph[b]
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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
    return components


def test_the_scanner_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    # The rules below are only as good as the scanner: a cycle hidden in a
    # function body or written relatively must be seen.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (package / "b.py").write_text("from . import a\n")
    graph = _graph(_modules(package, "pkg"))

    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg", "pkg.a"}
    assert _pairs_importing_each_other(graph) == [("pkg.a", "pkg.b")]


def test_devices_imports_neither_commands_nor_analytics() -> None:
    # Arrows point from commands and analytics down to devices, never back up:
    # the device admin page gets its command and telemetry panels from a hook.
    offending = {
        module: sorted(t for t in targets if _top(t) in {"commands", "analytics"})
        for module, targets in _all_imports(_modules(ROOT / "devices", "devices")).items()
    }

    assert {m: t for m, t in offending.items() if t} == {}
    assert app_graph()["devices"] <= {"homepot"}


def test_no_two_server_modules_import_each_other() -> None:
    graph = _graph(_server_modules())

    assert _pairs_importing_each_other(graph) == []


def test_no_two_agent_modules_import_each_other() -> None:
    graph = _graph(_modules(AGENT_PACKAGE, "homepot_agent"))

    assert "homepot_agent.cli" in graph  # the scan found the agent
    assert _pairs_importing_each_other(graph) == []


def test_the_agent_imports_nothing_from_the_server_or_django() -> None:
    forbidden = {*SERVER_APPS, "celery_app", "django", "rest_framework", "celery"}
    offending = {
        module: sorted(name for name in names if _top(name) in forbidden)
        for module, names in _all_imports(_modules(AGENT_PACKAGE, "homepot_agent")).items()
    }

    assert {m: names for m, names in offending.items() if names} == {}


def test_the_apps_import_each_other_one_way_only() -> None:
    # analytics, commands -> devices -> homepot: the apps form a hierarchy, and
    # the project package wires them by dotted strings (urls, INSTALLED_APPS)
    # rather than importing them.
    apps = app_graph()

    assert _cycles(apps) == []
    assert apps["homepot"] <= {"celery_app"}


def test_server_modules_form_no_import_cycle() -> None:
    # Not just pairs: no longer loop (a -> b -> c -> a) either.
    graph = _graph(_server_modules())

    assert _cycles(graph) == []


if __name__ == "__main__":  # `python tests/test_import_graph.py` prints the app graph
    for app, targets in app_graph().items():
        print(f"{app} -> {', '.join(sorted(targets)) or '(nothing)'}")
