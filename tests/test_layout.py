"""The tree's architecture, enforced: imports flow one way (DEVELOPERS.md, "Module map")."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "imdb_sentiment"
# Rooms from the bottom up: a module may import its own room and the rooms before it.
ROOMS = ["errors", "io_utils", "config", "runs", "data", "text", "training", "models", "evaluation",
         "pipelines", "serving", "cli"]  # fmt: skip
# Upward imports allowed inside functions only: none. (config.py is the schema alone; the configure step
# that reaches the registries lives in models/configure.py.)
LAZY_ALLOWED: set[tuple[str, str]] = set()


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "imdb_sentiment" or len(parts) < 2:
        return None
    return parts[1]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every ``imdb_sentiment`` import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    top_level = {id(node) for node in tree.body}
    type_checking = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found += [(name, id(node) in top_level) for name in names if name.startswith("imdb_sentiment.")]
    return found


def test_every_room_is_known() -> None:
    rooms = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()}
    rooms -= {"__init__", "__pycache__", "py"}
    assert rooms <= set(ROOMS), f"add new rooms to ROOMS and DEVELOPERS.md: {rooms - set(ROOMS)}"


def test_imports_flow_one_way() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        here = relative.parts[0].removesuffix(".py")
        if here == "__init__":
            continue
        for module, top_level in imports(path):
            there = room_of(module)
            if there is None or ROOMS.index(there) <= ROOMS.index(here):
                continue
            if not top_level and (here, there) in LAZY_ALLOWED:
                continue
            problems.append(f"{relative} imports {module} ({here} -> {there})")
    assert not problems, "imports running upward:\n" + "\n".join(problems)


def test_the_layout_check_catches_an_upward_import(tmp_path) -> None:
    bad = tmp_path / "loop.py"
    bad.write_text("from imdb_sentiment.pipelines.experiment import run_experiment\n")
    assert imports(bad) == [("imdb_sentiment.pipelines.experiment", True)]
    assert ROOMS.index(room_of("imdb_sentiment.pipelines.experiment")) > ROOMS.index("training")


def test_the_schema_imports_no_model_or_engine_code() -> None:
    """config.py validates without the registries: not at import time, not lazily inside a validator."""
    reached = {room_of(module) for module, _ in imports(PACKAGE / "config.py")}
    assert not reached & {"models", "training", "pipelines", "serving", "cli"}, reached


def _module_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, lazy imports inside functions included (only
    TYPE_CHECKING blocks are left out): a cycle through a lazy import is still a cycle."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hidden = {id(child) for node in ast.walk(tree) if isinstance(node, ast.If)
                  and "TYPE_CHECKING" in ast.unparse(node.test) for child in ast.walk(node)}  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imdb_sentiment"):
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("imdb_sentiment")]
            graph[name] |= {resolve(target) for target in targets} - {name, ""}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_even_through_lazy_imports() -> None:
    assert _cycles(_module_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_source_file_over_400_lines() -> None:
    long = {str(path.relative_to(PACKAGE)): count for path in PACKAGE.rglob("*.py")
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > 400}  # fmt: skip
    assert not long, f"split these files (one job each): {long}"
