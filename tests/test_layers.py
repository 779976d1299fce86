"""The package's layers, read from its imports (every import, module level or inside a function).

  contracts                                   the bottom: imports nothing of parity above it
  worker                                      the worker side: contracts only
  numerics < planning < execution < report < the top (api, convert, cli, the plugin, ...)
                                              the parent side: its own layer or below, never the worker side,
                                              except inline mode: execution.executor -> worker.serving

docs/architecture.md draws the same picture; a change to the layers changes both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "parity"
PARENT = ("numerics", "planning", "execution", "report")  # bottom to top; the top is every module outside
CROSSINGS = {("parity.execution.executor", "parity.worker.serving")}  # inline mode: the serve loop, in-process


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The parity modules ``name`` imports (``from a import b`` names a.b when b is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name and m != "parity"}


def layer(name: str) -> str:
    part = name.split(".")[1] if name.count(".") else ""
    if part in ("contracts", "worker") + PARENT:
        return part
    return "top"


RANK = {"contracts": 0, "numerics": 1, "planning": 2, "execution": 3, "report": 4, "top": 5}


def broken_rule(importer: str, imported: str) -> str | None:
    """The layering rule ``importer -> imported`` breaks, in words; None when it keeps them."""
    a, b = layer(importer), layer(imported)
    if (importer, imported) in CROSSINGS or a == b:
        return None
    if a == "contracts":
        return "contracts import nothing of parity above them"
    if a == "worker":
        return None if b == "contracts" else "the worker side imports only parity.contracts"
    if b == "worker":
        return "the parent side never imports the worker side (inline mode's executor -> worker.serving aside)"
    if RANK[b] > RANK[a]:
        return f"{a} sits below {b}: imports run down the layers, never up"
    return None


def violations(graph: dict) -> list[str]:
    return sorted(f"{a} -> {b}: {why}" for a, deps in graph.items() for b in deps if (why := broken_rule(a, b)))


def cycles(graph: dict) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> dict:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_import_keeps_the_layers(graph):
    assert not violations(graph), "\n".join(violations(graph))


def test_no_import_circles(graph):
    assert not cycles(graph), cycles(graph)


def test_the_worker_side_reaches_only_contracts(graph):
    worker = [m for m in graph if layer(m) == "worker"]
    assert "parity.worker.serving" in worker and "parity.worker.runners.torch" in worker
    assert {layer(d) for m in worker for d in graph[m]} <= {"worker", "contracts"}


def test_the_rules_catch_what_they_name(tmp_path):
    """A worker module importing planning, contracts importing a runner, planning importing execution, and a
    circle: each is found and named (the test above would fail on any of them)."""
    graph = {"parity.worker.runners.torch": {"parity.planning.tasks"},
             "parity.contracts.registry": {"parity.worker.runners.torch"},
             "parity.planning.tasks": {"parity.execution.pool"},
             "parity.execution.pool": {"parity.execution.pool_client"},
             "parity.execution.pool_client": {"parity.execution.pool"},
             "parity.execution.executor": {"parity.worker.serving"}}
    found = violations(graph)
    assert found == [
        "parity.contracts.registry -> parity.worker.runners.torch: contracts import nothing of parity above them",
        "parity.planning.tasks -> parity.execution.pool: planning sits below execution: imports run down the "
        "layers, never up",
        "parity.worker.runners.torch -> parity.planning.tasks: the worker side imports only parity.contracts"]
    assert cycles(graph) == [["parity.execution.pool", "parity.execution.pool_client"]]
    # the same on a real file: a worker module that imports planning
    (tmp_path / "parity" / "worker").mkdir(parents=True)
    bad = tmp_path / "parity" / "worker" / "bad.py"
    bad.write_text("def f():\n    from parity.planning.tasks import resolve\n")
    (tmp_path / "parity" / "planning").mkdir()
    (tmp_path / "parity" / "planning" / "tasks.py").write_text("")
    known = modules(tmp_path / "parity")
    assert violations({m: imports(m, p, known) for m, p in known.items()}) == [
        "parity.worker.bad -> parity.planning.tasks: the worker side imports only parity.contracts"]
