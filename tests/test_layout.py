"""The package's import graph: no circles, arrows that point down the layers only.

The graph is read from the source with :mod:`ast`; nothing is imported. A module's arrows are its
``import`` statements, those inside functions included (a circle hidden in a function is still a
circle); an import under ``if TYPE_CHECKING:`` never runs and is no arrow. ``docs/layers.dot`` draws
the same graph by package, and docs/design.md shows it. ``python -m tests.test_layout`` prints the
arrows between packages as the .dot file lists them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "byterange_server"

#: Bottom to top. A module may import its own package and any layer below its own; the members of
#: one layer are peers and import each other not at all. The package root (``__version__`` and the
#: lazy public names) sits at the bottom: it imports nothing when it is loaded.
LAYERS: tuple[tuple[str, ...], ...] = (
    (PACKAGE, "errors", "units", "extents"),
    ("protocol", "config"),
    ("auth", "storage"),
    ("db",),
    ("uploads",),
    ("hooks", "runtime"),
    ("api",),
    ("app",),
    ("cli",),
)

#: The client stands beside the server: it speaks the wire formats and shares the bottom layer,
#: and nothing of the server imports it.
CLIENT = "client"
#: The conformance checker judges any server by the texts alone: it imports nothing of ours, and
#: the client only offers it as a subcommand.
CHECKER = "conformance"
CLIENT_SIDE = frozenset({CLIENT, CHECKER})
CLIENT_MAY_IMPORT = frozenset({CLIENT, CHECKER, "protocol", PACKAGE, "errors", "units", "extents"})

#: The imports inside functions, and why each waits. Third-party modules by their top-level name.
DEFERRED = {
    (PACKAGE, "importlib"): "the lazy public names: the client starts without Flask",
    ("cli", "db.migrate"): "Alembic and SQLAlchemy, only for the commands that touch the database",
    ("cli", "app"): "Flask and the whole server, only for cleanup",
    ("cli", "sqlalchemy"): "SQLAlchemy, only for db current (to show the database's URL)",
    ("client.cli", "tqdm"): "the progress bar, only on the command line",
    ("runtime.gunicorn_conf", "runtime.shutdown"): "a gunicorn hook (the config file gunicorn execs)",
    ("runtime.gunicorn_conf", "runtime.multiproc"): "a gunicorn hook (the config file gunicorn execs)",
    ("runtime.multiproc", "prometheus_client"): "reads PROMETHEUS_MULTIPROC_DIR on import: after it is set",
    ("storage", "storage.s3"): "the S3 backend, only when BYTERANGE_STORAGE=s3 (it loads boto3)",
    ("storage.s3", "boto3"): "the s3 extra: a local deployment need not install it",
    ("storage.s3", "botocore"): "the s3 extra: a local deployment need not install it",
}


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module of the package by dotted name without the package prefix (the root is PACKAGE)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root / PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts) or PACKAGE] = (path, is_package)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, in_function: bool = False) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from ((n, in_function) for n in node.orelse if isinstance(n, (ast.Import, ast.ImportFrom)))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _imports(node, inner)


def _name(dotted: str) -> str:
    """``byterange_server.db.clock`` -> ``db.clock``; the root -> PACKAGE; third party: its top name."""
    if dotted == PACKAGE:
        return PACKAGE
    if dotted.startswith(PACKAGE + "."):
        return dotted[len(PACKAGE) + 1:]
    return dotted.split(".")[0]


def import_graph(root: Path = REPO) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(module-level arrows, arrows inside functions) as (importer, imported) pairs."""
    modules = _modules(root)
    top: set[tuple[str, str]] = set()
    deferred: set[tuple[str, str]] = set()
    for name, (path, is_package) in modules.items():
        dotted = PACKAGE if name == PACKAGE else f"{PACKAGE}.{name}"
        here = dotted.split(".") if is_package else dotted.split(".")[:-1]
        for node, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                # ``from pkg import mod`` imports the module; ``from mod import name`` the module.
                targets = [
                    f"{base}.{alias.name}" if _name(f"{base}.{alias.name}") in modules else base
                    for alias in node.names
                ]
            for target in targets:
                (deferred if in_function else top).add((name, _name(target)))
    return top, deferred


def _ours(arrows: Iterable[tuple[str, str]], modules: Iterable[str]) -> set[tuple[str, str]]:
    known = set(modules)
    return {(a, b) for a, b in arrows if b in known and a != b}


def unit(module: str) -> str:
    """The layer member a module belongs to: its package under the root, or the module itself."""
    return module if module == PACKAGE else module.split(".")[0]


def _level(name: str) -> int:
    for level, members in enumerate(LAYERS):
        if name in members:
            return level
    raise KeyError(name)


def upward(arrows: Iterable[tuple[str, str]]) -> list[str]:
    """The arrows that do not point down (or stay inside one package)."""
    wrong = []
    for a, b in sorted(arrows):
        ua, ub = unit(a), unit(b)
        if ua == ub:
            continue
        if ua in CLIENT_SIDE or ub in CLIENT_SIDE:
            if ua not in CLIENT_SIDE:
                wrong.append(f"{a} -> {b}: the server does not import the client")
            elif ua == CHECKER:
                wrong.append(f"{a} -> {b}: the conformance checker imports nothing of ours")
            elif ub not in CLIENT_MAY_IMPORT:
                wrong.append(f"{a} -> {b}: the client imports only {sorted(CLIENT_MAY_IMPORT)}")
            continue
        if _level(ub) >= _level(ua):
            side = "sideways" if _level(ub) == _level(ua) else "upward"
            wrong.append(f"{a} -> {b}: {side} ({ua} is layer {_level(ua)}, {ub} is layer {_level(ub)})")
    return wrong


def circles(arrows: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in arrows:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_arrows(arrows: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The arrows between layer members, as docs/layers.dot draws them (the root's left out)."""
    return {(unit(a), unit(b)) for a, b in arrows if unit(a) != unit(b) and PACKAGE not in (unit(a), unit(b))}


MODULES = _modules(REPO)
TOP, DEFERRED_FOUND = import_graph()
ARROWS = _ours(TOP | DEFERRED_FOUND, MODULES)

def _api_deferred() -> set[tuple[str, str]]:
    return {(a, b) for a, b in _ours(DEFERRED_FOUND, MODULES) if unit(a) in ("api", "app")}


def test_every_module_belongs_to_a_layer() -> None:
    members = {name for layer in LAYERS for name in layer} | CLIENT_SIDE
    assert {unit(name) for name in MODULES} == members


def test_arrows_point_down_the_layers() -> None:
    assert upward(ARROWS) == []


def test_no_circles() -> None:
    assert circles(ARROWS) == []


def test_imports_inside_functions_are_the_listed_ones() -> None:
    found = {(a, b) for a, b in DEFERRED_FOUND if a != b} - _api_deferred()
    assert found == set(DEFERRED)


def test_no_imports_of_our_modules_inside_functions_in_api_and_app() -> None:
    assert _api_deferred() == set()


def test_the_checks_catch_an_upward_arrow_a_sideways_one_and_a_circle() -> None:
    assert upward({("storage.base", "api.views")}) == [
        "storage.base -> api.views: upward (storage is layer 2, api is layer 6)"
    ]
    assert upward({("hooks.outbox", "runtime.metrics")}) != []
    assert upward({("protocol.tus", "client.wire")}) != []
    assert upward({("client.wire", "uploads.values")}) != []
    assert circles({("db.models", "db.engine"), ("db.engine", "db.models")}) == [["db.engine", "db.models"]]
    top, deferred = import_graph()
    assert ("app", "uploads.service") in top and ("cli", "app") in deferred


_DOT_ARROW = re.compile(r'^\s*"?([\w.]+)"?\s*->\s*"?([\w.]+)"?', re.M)
_DOT_NODE = re.compile(r'^\s*"?([\w.]+)"?\s*\[', re.M)


def _dot() -> tuple[set[str], set[tuple[str, str]]]:
    text = (REPO / "docs" / "layers.dot").read_text(encoding="utf-8")
    nodes = {n for n in _DOT_NODE.findall(text) if n not in ("graph", "node", "edge")}
    return nodes, set(_DOT_ARROW.findall(text))


def test_layers_dot_lists_every_package_and_module_at_the_top() -> None:
    nodes, _ = _dot()
    assert nodes == {name for layer in LAYERS for name in layer if name != PACKAGE} | CLIENT_SIDE


def test_layers_dot_draws_the_arrows_between_packages() -> None:
    _, arrows = _dot()
    assert arrows == package_arrows(ARROWS), "regenerate the arrows: python -m tests.test_layout"


if __name__ == "__main__":
    for a, b in sorted(package_arrows(ARROWS)):
        print(f'  "{a}" -> "{b}";')
