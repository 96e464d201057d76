"""The package's layering, checked on the source (every import, lazy ones included): the adversarial half is a
library for any PyTorch model that imports nothing of the red-team half or of the experiments; experiments import one
way (registry -> experiment modules -> layout; pareto and commands -> registry), with no circle."""

from __future__ import annotations

import ast
from pathlib import Path

import redlat

SRC = Path(redlat.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("redlat")}


def _module(path: Path) -> str:
    return "redlat." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def test_the_adversarial_half_stands_alone():
    outside = ("redlat.red_team", "redlat.scoring", "redlat.chatbot", "redlat.store", "redlat.experiments",
               "redlat.harden", "redlat.report", "redlat.scale", "redlat.analysis", "redlat.runner")
    offending = {
        _module(path): sorted(name for name in _imports(path) if name.startswith(outside))
        for path in (SRC / "adversarial").rglob("*.py")
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_experiments_import_one_way():
    graph = {_module(p): {n for n in _imports(p) if n.startswith("redlat.experiments")}
             for p in (SRC / "experiments").glob("*.py")}
    graph = {m: {n for n in names if n in graph or n.rsplit(".", 1)[0] in graph} for m, names in graph.items()}
    graph = {m: {n if n in graph else n.rsplit(".", 1)[0] for n in names} - {m} for m, names in graph.items()}
    runners = {"redlat.experiments.trojans_vision", "redlat.experiments.trojans_text", "redlat.experiments.trojans_lm",
               "redlat.experiments.harden_loop"}
    above = {"redlat.experiments.pareto", "redlat.experiments.commands", "redlat.experiments.registry"}
    for module in runners:
        assert not (graph[module] & above), f"{module} imports {graph[module] & above}"
    assert "redlat.experiments.registry" not in graph["redlat.experiments.layout"] and not graph[
        "redlat.experiments.layout"]

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    circles = sorted(m for m in graph if reaches(m, m, {m}))
    assert circles == []
