"""The package's modules import each other without a loop (lazy imports included): each module
can be read on its own, and a new module finds a place in one order."""

import ast
from pathlib import Path

import pytest

import fame_core
from tests.conftest import REPO

pytestmark = pytest.mark.fast

ROOT = Path(fame_core.__file__).resolve().parent


def import_graph() -> dict[str, set[str]]:
    """module -> the fame_core modules it imports anywhere in its text (package re-exports left out)."""
    mods = {".".join(p.with_suffix("").relative_to(ROOT.parent).parts).removesuffix(".__init__"): p
            for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                deps |= {t for t in [target] + [f"{target}.{a.name}" for a in node.names] if t in mods}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
        graph[name] = deps - {name, "fame_core", "fame_core.models"}
    return graph


def find_cycle(graph):
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_loop_in_fame_core():
    graph = import_graph()
    assert {"fame_core.data", "fame_core.synthetic", "fame_core.dataset"} <= set(graph)
    assert "fame_core.dataset" in graph["fame_core.synthetic"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_every_model_parameter_is_typed_by_the_contract():
    """Issue 40.5: a function of fame_core that takes a model says so (`model: Recommender`), so the
    contract, not a name check, is what it relies on."""
    import ast

    untyped = []
    for path in sorted((REPO / "fame_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args:
                    if arg.arg == "model" and (arg.annotation is None or not any(
                            cls in ast.unparse(arg.annotation) for cls in ("Recommender", "FAME", "SASRec"))):
                        untyped.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert not untyped, untyped


def test_no_sys_path_edits_anywhere():
    """Issue 40.3: scripts run as modules or from their folder; nothing edits sys.path."""
    import re

    edits = [str(p.relative_to(REPO)) for folder in ("fame_core", "app", "bench", "experiments", "tests", "notebooks")
             for p in (REPO / folder).rglob("*.py")
             if p.resolve() != Path(__file__).resolve() and re.search(r"sys\.path\.(insert|append)", p.read_text())]
    assert not edits, edits
