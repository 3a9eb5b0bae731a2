"""The package's structure: no import cycles (function-level imports included), no task
branches outside kerasflow/tasks, no private names imported across modules."""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kerasflow"


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("kerasflow")


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), package inits excluded
    as importers of their own submodules' names only through re-exports."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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

    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles(graph):
    # grimp sees every import, including those inside functions.
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    class Fake:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"a": {"b"}, "b": {"a"}, "c": set()}[m]

    assert _cycles(Fake) == [["a", "b"]]


def test_no_task_branches_outside_tasks():
    pattern = re.compile(r"""(\btask|\["task"\]|get\("task"[^)]*\)) ?(==|!=| in )""")
    hits = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if "tasks" not in path.relative_to(PACKAGE).parts and path.name != "config.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_no_private_names_imported_across_modules():
    pattern = re.compile(
        r"from kerasflow[.\w]* import (\(\s*)?_[a-z]|from kerasflow[.\w]* import [^#\n]*, _[a-z]"
    )
    hits = [
        f"{path.relative_to(PACKAGE.parent)}: {m.group(0)}"
        for path in PACKAGE.rglob("*.py")
        for m in pattern.finditer(path.read_text())
    ]
    assert hits == []
