"""The library's modules import one another without a cycle, counting imports inside functions:
each concern (verdicts, gates, training log, trend, report, rendering, CLI) builds on the ones below it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mmgate"


def imports_of(path: Path) -> set[str]:
    """The mmgate modules `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                names = [base] if base else [alias.name for alias in node.names]
            elif base.startswith("mmgate"):
                names = [base.removeprefix("mmgate").lstrip(".") or alias.name for alias in node.names]
            else:
                continue
            found |= {name.split(".")[0] for name in names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mmgate.")}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {name for name in found if name in modules} - {path.stem}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each as the path that closes it)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_library_has_no_import_cycle():
    graph = {path.stem: imports_of(path) for path in PACKAGE.glob("*.py")}
    assert graph["gates"] and "verdict" in graph["gates"]  # the graph is read, not empty
    assert not cycles(graph), cycles(graph)


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    assert cycles({"gates": {"report"}, "report": {"gates"}}) == [["gates", "report", "gates"]]
