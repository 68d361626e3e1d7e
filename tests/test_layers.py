"""The server's packages are layers: each imports only itself and the layers below it.

``LAYERS`` is the one declaration of the order, lowest first. A rank may hold several
packages side by side (the gRPC and HTTP transports): those do not import each other.
Every import counts, those under ``if TYPE_CHECKING`` and inside functions too, since a
circle or an upward arrow there is one all the same. Only the store imports redis (its
exceptions become the service's own errors there, ``store/redis_errors.py``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import pytest

PACKAGE = "threads_server"
ROOT = Path(str(resources.files(PACKAGE)))

LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors", "pb"),  # the base every layer may import ("": the package's __init__)
    ("ops",),  # config, workers, metrics, tracing, logs, embedded server, TLS, event loop
    ("store",),  # ThreadStore, its Lua, the corridor to Redis, migrate
    ("service",),  # the handlers and the per-call pipeline both transports share
    ("transports", "transports.grpc", "transports.http"),  # side by side
    ("server",),  # ThreadsServer: the wiring
    ("__main__",),  # the command line
)
"""The layers, lowest first: a module imports its own package and lower ranks only."""


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (``store.corridor.pipelined``; the
    package's own ``__init__`` is "")."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: Iterable[str]) -> set[str]:
    """The package's modules ``path`` imports, anywhere in the file."""
    known = set(known)
    found: set[str] = set()

    def add(dotted: str) -> None:
        if dotted == PACKAGE or dotted.startswith(PACKAGE + "."):
            name = dotted[len(PACKAGE) + 1 :]
            while name not in known and name:  # a name imported from a module
                name = name.rpartition(".")[0]
            found.add(name)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                add(f"{node.module}.{alias.name}")
    return found


def unit_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> tuple[int, str]:
    """The rank and the package (the longest declared prefix) a module belongs to."""
    best: tuple[int, str] | None = None
    for rank, units in enumerate(layers):
        for unit in units:
            inside = module == unit or (unit == "" or module.startswith(unit + "."))
            if inside and (best is None or len(unit) > len(best[1])):
                best = (rank, unit)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports(path, found) - {name} for name, path in found.items()}


def wrong_arrows(
    edges: Mapping[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS
) -> list[str]:
    """Imports that climb to a higher rank, or cross to a sibling package of the same rank."""
    wrong = []
    for module, targets in sorted(edges.items()):
        rank, unit = unit_of(module, layers)
        for target in sorted(targets):
            target_rank, target_unit = unit_of(target, layers)
            if target_rank > rank:
                wrong.append(f"{module} -> {target} (up: {unit!r} is below {target_unit!r})")
            elif target_rank == rank and target_unit != unit and "" not in (unit, target_unit):
                wrong.append(f"{module} -> {target} (sideways: {unit!r} beside {target_unit!r})")
    return wrong


def circles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        unit_of(module)


def test_no_import_climbs_a_layer_or_crosses_to_a_sibling() -> None:
    assert wrong_arrows(graph()) == []


def test_no_import_circle() -> None:
    assert circles(graph()) == []


def _redis_importers() -> dict[str, list[str]]:
    """Each module that imports redis, with what it imports."""
    found: dict[str, list[str]] = {}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found.setdefault(module, []).extend(n for n in names if n.split(".")[0] == "redis")
    return {module: names for module, names in found.items() if names}


def test_only_the_store_imports_redis() -> None:
    """The store owns Redis: nothing above it knows redis-py's exceptions or clients."""
    outside = [m for m in _redis_importers() if unit_of(m)[1] != "store"]
    assert outside == []


# Inside the store, the modules that may know redis-py: the corridor (every call, and
# Watch's subscriptions), the clients' construction and the exceptions' mapping.
CORRIDOR = ("store.corridor", "store.connect", "store.redis_errors")


def test_every_way_to_redis_goes_through_the_corridor() -> None:
    """The rest of the store (the operations, Watch's feeds, migrate) reaches Redis only
    through ``Corridor``: it cannot send a command or subscribe without redis-py."""
    beside = [
        m for m in _redis_importers() if not any(m == c or m.startswith(c + ".") for c in CORRIDOR)
    ]
    assert beside == []
    assert {"store.corridor.subscriptions", "store.corridor.pipelined"} <= set(_redis_importers())


def test_the_checks_catch_an_upward_arrow_a_sibling_and_a_circle() -> None:
    """The checks themselves, on a made-up graph: each rule fails when broken."""
    edges = {
        "errors": set(),
        "store.a": {"errors", "service.b"},  # up
        "service.b": {"store.a"},  # down, but closes a circle with the line above
        "transports.grpc.x": {"transports.http.y"},  # sideways
        "transports.http.y": {"service.b"},
    }
    assert wrong_arrows(edges) == [
        "store.a -> service.b (up: 'store' is below 'service')",
        "transports.grpc.x -> transports.http.y "
        "(sideways: 'transports.grpc' beside 'transports.http')",
    ]
    assert circles(edges) == [["service.b", "store.a"]]


@pytest.mark.parametrize("module", ["store.thread_store", "service.call", "server"])
def test_the_graph_reads_the_real_imports(module: str) -> None:
    """Not an empty graph that passes by reading nothing."""
    assert graph()[module]
