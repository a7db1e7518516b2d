"""The layering rule, checked on the source: the core library imports no application, and consensus does no I/O.

Every module of ``node/`` and ``consensus/`` is parsed with ``ast`` (not imported, so a lazy import inside a
function or under ``TYPE_CHECKING`` counts as much as one at the top); an ``import``, ``from ... import``, or a
call of ``importlib.import_module`` / ``__import__`` with a literal name that reaches a forbidden package fails
the test, naming the file and line. Kinds, route providers and hooks of the applications are wired in by the
composition root (``cemp.wiring``), never found by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPLICATIONS = (
    "resolver",
    "collector",
    "accounting",
    "energy",
    "maintenance",
    "access",
    "web",
    "cemp",
    "tests",
    "bench",
)
CONSENSUS_NO_IO = ("asyncio", "time", "plyvel", "aiohttp", "socket", "subprocess", "threading", "node")


def imported_names(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, including ``importlib`` calls with literals.

    ``module`` is the dotted name of the file, to resolve relative imports.
    """
    out: list[tuple[int, str]] = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            out.append((node.lineno, base))
            out.extend((node.lineno, f"{base}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__", "find_spec") and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value.split(":", 1)[0]))
    return out


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad: dict[str, str] = {}
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    for path in files:
        rel = path.relative_to(ROOT)
        module = ".".join(rel.with_suffix("").parts)
        for line, name in imported_names(path.read_text(encoding="utf-8"), module):
            if name.split(".", 1)[0] in forbidden:
                bad.setdefault(f"{rel}:{line}", f"{rel}:{line} imports {name}")
    return list(bad.values())


@pytest.mark.parametrize("package", ["node", "consensus"])
def test_core_imports_no_application(package: str) -> None:
    bad = violations(package, APPLICATIONS)
    assert not bad, (
        f"{package}/ is a library: it must not import {', '.join(APPLICATIONS)} "
        "(pass kinds, routes and hooks in from cemp/wiring.py):\n" + "\n".join(bad)
    )


def test_consensus_is_pure() -> None:
    bad = violations("consensus", CONSENSUS_NO_IO)
    assert not bad, "consensus/ is a pure state machine (no I/O, clock or event loop):\n" + "\n".join(bad)


def test_the_checker_sees_every_form_of_import() -> None:
    """What the old core did (a string list of kind modules, a lazy import in the CLI) is caught."""
    old_chain = (
        "import importlib\n"
        'KIND_MODULES = ["node.devices", "resolver.kinds"]\n'
        "for m in KIND_MODULES:\n"
        "    importlib.import_module(m)\n"
        'importlib.import_module("resolver.kinds")\n'
    )
    old_cli = "def build_parser():\n    from collector.cli import add_parser\n    from . import demo\n"
    old_server = 'def load():\n    return __import__("resolver.api")\n'
    names = [n for _, n in imported_names(old_chain, "node.chain")]
    assert "resolver.kinds" in names
    names = [n for _, n in imported_names(old_cli, "node.cli")]
    assert "collector.cli" in names and "node.demo" in names
    assert [n for _, n in imported_names(old_server, "node.server")] == ["resolver.api"]
    assert [n for _, n in imported_names("from ..x import y\n", "node.sub.mod")] == ["node.x", "node.x.y"]


def test_no_kind_or_route_is_found_by_name() -> None:
    """No string list of modules to import: ``importlib`` is not used by the core at all."""
    bad = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in ("node", "consensus")
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in imported_names(path.read_text(encoding="utf-8"), package)
        if name.split(".", 1)[0] == "importlib"
    ]
    assert not bad, (
        "the core imports importlib (kinds and routes are passed in, not loaded by name): " + ", ".join(bad)
    )


@pytest.mark.parametrize(
    ("module", "must_not_import"),
    [
        ("resolver/handles.py", "resolver.kinds"),  # kinds builds on handles (Authority lives in handles)
        ("collector/ocr/bills.py", "collector.ocr.billgen"),  # the reader does not depend on the generator
    ],
)
def test_broken_import_cycles_stay_broken(module: str, must_not_import: str) -> None:
    path = ROOT / module
    dotted = ".".join(Path(module).with_suffix("").parts)
    names = [n for _, n in imported_names(path.read_text(encoding="utf-8"), dotted)]
    assert not [n for n in names if n == must_not_import or n.startswith(must_not_import + ".")], (
        f"{module} imports {must_not_import} again (an import cycle)"
    )


PACKAGES = ("node", "consensus", *(a for a in APPLICATIONS if a not in ("tests", "bench")))
"""The project's packages, whose imports of each other must not go round in a loop."""


def _runtime_source(source: str) -> ast.Module:
    """``source`` parsed, with the bodies of ``if TYPE_CHECKING:`` blocks dropped (imports only a type checker
    follows do not run, so they cannot make a cycle)."""

    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST | list[ast.stmt]:
            t = node.test
            name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                return [self.visit(s) for s in node.orelse]  # type: ignore[misc]
            return self.generic_visit(node)

    return Strip().visit(ast.parse(source))  # type: ignore[no-any-return]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at run time (at the top or inside a function)."""
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        dotted = module + (".__init__" if path.name == "__init__.py" else "")
        for _, name in imported_names(ast.unparse(_runtime_source(path.read_text(encoding="utf-8"))), dotted):
            while name and name not in files:
                name = name.rpartition(".")[0]
            # A module's own packages are imported before it whatever it says (``from pkg import sibling``
            # names ``pkg`` too): not an edge of its own making.
            if name and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    """No two project modules import each other, directly or round a loop, at run time (lazy imports included)."""
    found = cycles(import_graph())
    assert not found, (
        "import cycles (break them by moving what both need into a module of its own):\n"
        + "\n".join(" <-> ".join(c) for c in found)
    )


def test_the_cycle_finder_finds_a_lazy_cycle() -> None:
    graph = {"web.app": {"web.handles"}, "web.handles": {"web.errors"}, "web.errors": set()}
    assert cycles(graph) == []
    graph["web.handles"].add("web.app")  # what web.handles' render did before web/errors.py
    assert cycles(graph) == [["web.app", "web.handles"]]
    lazy = "def render():\n    from web.app import PageError\n"
    assert "web.app" in [n for _, n in imported_names(ast.unparse(_runtime_source(lazy)), "web.handles")]
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from node.server import Node\n"
    assert "node.server" not in [
        n for _, n in imported_names(ast.unparse(_runtime_source(typed)), "node.api")
    ]
