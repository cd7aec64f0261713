"""The import contract: imports run one way, and no module imports itself round a circle.

- The SDK (`scheduler_sdk`) imports neither daemon: framework authors get it without the master or the agent.
- The master and the agent never import each other: they meet only on the wire (`aiomesos.v1`).
- The daemons do not import the CLI (`scheduler_sdk.cli`): they take their plumbing from `scheduler_sdk._daemon`.
- The placement engine imports neither the CLI nor the local cluster launcher: it is a library.
- No import circles between our modules (function-level imports and `TYPE_CHECKING` imports count too: a circle
  hidden in a function is still a circle).

Read from the source (ast), so nothing is imported to check it and a violation names file and line."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scheduler_sdk", "mesos_master", "mesos_agent")

# (importer prefix, forbidden prefix, why)
FORBIDDEN: list[tuple[str, str, str]] = [
    ("scheduler_sdk", "mesos_master", "the SDK imports neither daemon"),
    ("scheduler_sdk", "mesos_agent", "the SDK imports neither daemon"),
    ("mesos_master", "mesos_agent", "master and agent never import each other"),
    ("mesos_agent", "mesos_master", "master and agent never import each other"),
    ("mesos_master", "scheduler_sdk.cli", "daemons do not import the CLI"),
    ("mesos_agent", "scheduler_sdk.cli", "daemons do not import the CLI"),
    ("scheduler_sdk.placement", "scheduler_sdk.cli", "the placement engine is a library"),
    ("scheduler_sdk.placement", "scheduler_sdk.local_cluster", "the placement engine is a library"),
    ("scheduler_sdk._daemon", "scheduler_sdk.cli", "daemon plumbing serves the CLI, not the other way"),
]


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    imported: str  # module name (the most specific one that exists)
    where: str  # path:line


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules(root: Path) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            modules[module_name(path, root)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an import of `name` loads, if it is one of ours: the longest prefix that is a module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path], root: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` loads pkg.sub when that is a module; otherwise a name from pkg.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.append(Import(module, target, f"{path.relative_to(root)}:{node.lineno}"))
    return found


def import_graph(root: Path) -> list[Import]:
    modules = our_modules(root)
    return [imp for module, path in modules.items() for imp in imports_of(module, path, modules, root)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: list[Import]) -> list[str]:
    return sorted(
        {
            f"{imp.where}: {imp.importer} imports {imp.imported} ({why})"
            for imp in graph
            for importer, forbidden, why in FORBIDDEN
            if _within(imp.importer, importer) and _within(imp.imported, forbidden)
        }
    )


def cycles(graph: list[Import]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    edges: dict[str, set[str]] = {}
    for imp in graph:
        edges.setdefault(imp.importer, set()).add(imp.imported)
        edges.setdefault(imp.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        # Iterative Tarjan: a deep import chain must not hit the recursion limit.
        work = [(node, iter(sorted(edges[node])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[current] = min(low[current], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[current])
            if low[current] == index[current]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == current:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_imports_run_one_way() -> None:
    problems = violations(import_graph(ROOT))
    assert problems == [], "forbidden imports:\n" + "\n".join(problems)


def test_no_import_circles() -> None:
    graph = import_graph(ROOT)
    circles = cycles(graph)
    detail = []
    for circle in circles:
        members = set(circle)
        detail.append(" <-> ".join(circle))
        detail += [f"    {i.where}: imports {i.imported}" for i in graph if {i.importer, i.imported} <= members]
    assert circles == [], "import circles:\n" + "\n".join(detail)


# The checker itself must be able to fail: a tree with a forbidden import and a circle.
def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_forbidden_import_and_a_circle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "scheduler_sdk/__init__.py": "",
            "scheduler_sdk/driver.py": "def f():\n    from mesos_master.cluster import Master\n",
            "mesos_master/__init__.py": "",
            "mesos_master/cluster.py": "from . import offers\n",
            "mesos_master/offers.py": "from mesos_master.cluster import Master\n",
            "mesos_agent/__init__.py": "",
            "mesos_agent/daemon.py": "from scheduler_sdk.cli.flags import FlagParser\n",
            "scheduler_sdk/cli/__init__.py": "",
            "scheduler_sdk/cli/flags.py": "",
        },
    )
    graph = import_graph(tmp_path)
    assert violations(graph) == [
        "mesos_agent/daemon.py:1: mesos_agent.daemon imports scheduler_sdk.cli.flags (daemons do not import the CLI)",
        "scheduler_sdk/driver.py:2: scheduler_sdk.driver imports mesos_master.cluster (the SDK imports neither daemon)",
    ]
    assert cycles(graph) == [["mesos_master.cluster", "mesos_master.offers"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_read(package: str) -> None:
    assert any(name == package or name.startswith(package + ".") for name in our_modules(ROOT))
