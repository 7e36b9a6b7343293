"""The import graph points one way: generated code and utilities <- model (numpy only) <- engine
(Ray) <- services (gRPC) <- the clients and tools (reporting, the Python client, studies, the
dashboard, benchmarks, the command line, the launcher of `twin up`), with no cycles. The graph is
grimp's (every import, module-level and function-local), so an import hidden in a function counts.

Imports made only for a type checker (`if TYPE_CHECKING:`) count too: a type names what a module
depends on, so where a lower module needs to name something above it, it types it as a Protocol of
its own (twin.model.ops.base.ShardContext, twin.engine.local_reads.ShardedFleet). There is no list
of tolerated exceptions: an upward import or a cycle fails."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import grimp
import pytest
from grimp import Layer

# High to low. Modules in one layer may import each other unless the layer is independent; a
# layer imports only layers below it (grimp checks whole chains, so a detour through a third
# module is caught too).
LAYERS = (
    Layer("twin.cli"),  # the command line
    Layer("twin.bench"),  # benchmarks drive the dashboard, the client and the engine
    Layer("twin.launcher"),  # `twin up`'s processes: the engine, the API, replicas, the dashboard
    Layer("dashboard", "twin.studies", independent=False),
    Layer("twin.reporting", "twin.client", independent=False),
    Layer("twin.services"),  # gRPC
    Layer("twin.engine"),  # Ray
    Layer("twin.yamlfile"),  # YAML files read with the model's input errors
    Layer("twin.model"),  # numpy only
    # Layer-free: generated protobuf code and small utilities any layer may use (twin.util imports
    # only the standard library and third-party packages).
    Layer("twin.generated", "twin.util"),
)
# The dashboard is a client of the API: besides itself, only these.
DASHBOARD_MAY_IMPORT = ("dashboard", "twin.client", "twin.generated", "twin.util")
# The model is pure numpy: no Ray, gRPC, protobuf, storage, web or process machinery, no I/O.
MODEL_MAY_NOT_IMPORT = frozenset({
    "ray", "grpc", "grpc_status", "grpc_health", "google", "duckdb", "dash", "plotly", "flask", "fastapi",
    "uvicorn", "a2wsgi", "prometheus_client", "psutil", "rich", "yaml", "cryptography",
    "os", "pathlib", "shutil", "tempfile", "socket", "subprocess", "multiprocessing", "threading", "asyncio",
    "concurrent", "urllib", "http", "sqlite3", "signal", "mmap", "pickle",
})

@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """Every import, TYPE_CHECKING ones included. Read-only for every test here, so one build serves them all."""
    return grimp.build_graph("twin", "dashboard", include_external_packages=True, cache_dir=None)



def upward_edges(graph: grimp.ImportGraph) -> dict[tuple[str, str], list[str]]:
    """(importer layer, imported layer) -> the import chains that go up, as readable lines."""
    out: dict[tuple[str, str], list[str]] = {}
    for dep in graph.find_illegal_dependencies_for_layers(LAYERS):
        out[(dep.importer, dep.imported)] = sorted(
            " -> ".join([",".join(sorted(r.heads)), *r.middle, ",".join(sorted(r.tails))]) for r in dep.routes)
    return out


def dashboard_imports(graph: grimp.ImportGraph) -> dict[str, list[str]]:
    """Forbidden package (e.g. twin.model) -> 'dashboard.x -> twin.model.y' lines."""
    out: dict[str, list[str]] = {}
    for m in sorted(graph.find_descendants("dashboard") | {"dashboard"}):
        for imported in graph.find_modules_directly_imported_by(m):
            if not imported.startswith(("twin.", "dashboard")) or imported == "twin":
                continue  # third-party and standard library: the dashboard may use them
            if any(imported == ok or imported.startswith(ok + ".") for ok in DASHBOARD_MAY_IMPORT):
                continue
            package = ".".join(imported.split(".")[:2])
            out.setdefault(package, []).append(f"{m} -> {imported}")
    return out


def cycles(graph: grimp.ImportGraph, ours: tuple[str, ...] = ("twin.", "dashboard")) -> list[frozenset[str]]:
    """The import cycles among our own modules: strongly connected sets of more than one module
    (Tarjan's algorithm, iterative so a long chain cannot hit the recursion limit)."""
    mine = {m for m in graph.modules if m.startswith(ours) and not m.startswith("twin.generated")}
    adj = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in mine) for m in sorted(mine)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in adj:
        if root in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(root, iter(adj[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(adj[w])))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


def test_the_graph_covers_every_layer(graph):
    # A layer missing from the graph would be skipped silently by grimp (a renamed package, say).
    for layer in LAYERS:
        for module in layer.module_tails:
            assert module in graph.modules, f"{module} is not in the import graph: update LAYERS"
    assert len([m for m in graph.modules if m.startswith("twin.model.")]) >= 10


def test_no_import_goes_up_a_layer(graph):
    assert not upward_edges(graph), upward_edges(graph)


def test_the_dashboard_imports_only_the_client_generated_code_and_utilities(graph):
    assert not dashboard_imports(graph), dashboard_imports(graph)


def test_the_utilities_import_nothing_of_twin_but_each_other(graph):
    # Layer-free means usable from every layer: twin.util may not lean on the model (or anything else).
    bad = sorted(f"{m} -> {i}" for m in graph.find_descendants("twin.util")
                 for i in graph.find_modules_directly_imported_by(m)
                 if i.startswith(("twin.", "dashboard")) and not i.startswith("twin.util"))
    assert not bad, bad


def test_the_model_imports_nothing_but_numpy_and_pure_libraries(graph):
    bad = sorted(f"{m} -> {i}" for m in graph.find_descendants("twin.model")
                 for i in graph.find_modules_directly_imported_by(m) if i.split(".")[0] in MODEL_MAY_NOT_IMPORT)
    assert not bad, bad


def test_the_layer_check_flags_an_import_from_below():
    g = grimp.ImportGraph()
    g.add_import(importer="p.low", imported="p.high")
    g.add_import(importer="p.high", imported="p.low")
    (dep,) = g.find_illegal_dependencies_for_layers([Layer("p.high"), Layer("p.low")])
    assert (dep.importer, dep.imported) == ("p.low", "p.high")


def test_no_import_cycles(graph):
    assert not cycles(graph), [sorted(c) for c in cycles(graph)]


def test_the_cycle_finder_finds_a_cycle_and_only_it():
    g = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.e", "p.d")):
        g.add_import(importer=a, imported=b)
    assert cycles(g, ours=("p.",)) == [frozenset({"p.a", "p.b", "p.c"})]


def test_the_model_check_sees_a_function_local_import(tmp_path, monkeypatch):
    # A package whose only Ray import is inside a function: grimp's graph must still hold the edge.
    pkg = tmp_path / "layered_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "kernel.py").write_text("def f():\n    import ray\n    return ray\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    g = grimp.build_graph("layered_probe", include_external_packages=True, cache_dir=None)
    assert "ray" in g.find_modules_directly_imported_by("layered_probe.kernel")
    sys.modules.pop("layered_probe", None)
