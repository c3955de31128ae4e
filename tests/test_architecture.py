"""The house is one-way: every import between callshield's packages points down, and no modules import each other in a loop.

The intended direction (``docs/architecture.md``)::

    cli                      the command line: wires agent and console together
    agent      console       a call's runtime on a floor machine | the hub, store and pages
    detection                pure text and numbers: what the customer said is harassment
    models                   speech recognition and the sentence encoder
    audio                    sound in, frames out: devices, AudioSocket, WAV, VAD, recording
    kernel                   errors, config sections, protocol, levels, clock, recordings

A package may import itself and the packages listed for it in :data:`ALLOWED`.
Imports inside functions count as well (they are arrows too). The test reads
the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, frozenset[str]] = {
    "kernel": frozenset(),
    "audio": frozenset({"kernel"}),
    "models": frozenset({"kernel", "audio"}),
    "detection": frozenset({"kernel"}),
    "console": frozenset({"kernel"}),
    "agent": frozenset({"kernel", "audio", "models", "detection"}),
    "cli": frozenset({"kernel", "audio", "models", "detection", "console", "agent"}),
}
"""Package -> the packages it may import."""

MODELS_FROM_AUDIO = frozenset({"audio.frames", "audio.errors"})
"""Models take frames and segments from audio through the frame types only."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, inner: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = inner or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    found.append((f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base, child.lineno, inner))
            visit(child, nested)

    visit(tree, False)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _house() -> dict[str, list[tuple[str, int, bool]]]:
    modules: dict[str, list[tuple[str, int, bool]]] = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            modules[module] = [(name, line, inner) for name, line, inner in _imports(path, module) if name.split(".")[0] in ALLOWED]
    return modules


def test_every_package_is_known_and_every_module_parses():
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert set(ALLOWED) <= on_disk, f"missing packages: {set(ALLOWED) - on_disk}"
    assert len(_house()) > 60


def test_every_import_between_packages_points_down():
    wrong = []
    for module, imports in _house().items():
        own = module.split(".")[0]
        for name, line, inner in imports:
            target = name.split(".")[0]
            where = f"{module}:{line}{' (inside a function)' if inner else ''} imports {name}"
            if target != own and target not in ALLOWED[own]:
                wrong.append(where)
            elif own == "models" and target == "audio" and name not in MODELS_FROM_AUDIO:
                wrong.append(where + " (models take audio through the frame types only)")
    assert not wrong, "arrows against the house's direction:\n" + "\n".join(dict.fromkeys(wrong))


def test_no_import_cycle_between_modules():
    house = _house()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in house.items():
        for name, _, _ in imports:
            # "from package import name" of a package's __init__ counts as that package
            while name and name not in house:
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
    cycles = _cycles(graph)
    assert not cycles, "modules that import each other in a loop:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def test_the_checker_sees_a_wrong_arrow_and_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert "console" not in ALLOWED["agent"] and "agent" not in ALLOWED["console"]
