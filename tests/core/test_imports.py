"""The layout's rules, read from the source: imports point one way, and there are no cycles."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "documents", "scripts", "bench")
FEATURES = ("accounts", "items", "live", "mail", "operations", "webhooks")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported(path: Path, known: set[str]) -> Iterator[str]:
    """The project modules `path` imports (at any depth: a function-level import counts)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from api.live import feed` imports the module api.live.feed, not only api.live
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield name


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(path, known)) - {name} for name, path in found.items()}


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of modules, or None."""
    state: dict[str, str] = {}  # module -> "open" while on the stack, "done" after

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target, [*path, target])):
                return found
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_project_has_no_import_cycle() -> None:
    assert cycle_in(graph()) is None


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle_in(edges) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from api.live import feed\n")
    assert set(imported(source, {"api.live", "api.live.feed"})) == {"api.live", "api.live.feed"}


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        (
            "api.core",
            ("api.accounts", "api.items", "api.live", "api.mail", "api.operations", "api.webhooks"),
        ),
        ("api.core", ("api.main", "api.app", "api.server")),
        ("documents", ("api", "scripts", "bench")),
        ("api", ("scripts", "bench", "tests")),
        ("scripts", ("bench", "tests")),
    ],
)
def test_imports_point_one_way(importer: str, forbidden: tuple[str, ...]) -> None:
    """Features use core and documents; core knows no feature and no app wiring; documents
    know nothing of the API; nothing installed imports the benchmark or the tests."""
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items()
        if source == importer or source.startswith(f"{importer}.")
        for target in targets
        if any(target == f or target.startswith(f"{f}.") for f in forbidden)
    )
    assert wrong == []


def test_features_depend_on_each_other_without_cycles() -> None:
    """accounts -> mail, items -> accounts, live -> items: a feature-level DAG."""
    edges: dict[str, set[str]] = {feature: set() for feature in FEATURES}
    for source, targets in graph().items():
        parts = source.split(".")
        if len(parts) < 2 or parts[0] != "api" or parts[1] not in FEATURES:
            continue
        for target in targets:
            other = target.split(".")
            if len(other) > 1 and other[0] == "api" and other[1] in FEATURES:
                edges[parts[1]].add(other[1])
    for feature in edges:
        edges[feature].discard(feature)
    assert cycle_in(edges) is None, edges


def test_every_module_opens_with_a_docstring() -> None:
    missing = [
        name
        for name, path in modules().items()
        if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert missing == []
