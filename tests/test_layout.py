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
